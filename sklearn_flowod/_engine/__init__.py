"""What makes the default path fast, behind one seam: the thread policy, the
scoring batch sizes, the coupling flows' feature-major training pass and the
folded evaluator of trained ones."""
