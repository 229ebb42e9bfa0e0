"""What makes the default path fast, behind one seam: the thread policy, the
scoring batch sizes and the folded evaluator of trained coupling flows."""
