"""The base class's documented extension points match the code."""

import re

import sklearn_flowod.base as base


def _package_subclasses(cls) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        if sub.__module__.startswith("sklearn_flowod"):
            found |= {sub, *_package_subclasses(sub)}
    return found


def test_the_base_docstring_lists_every_extension_point_and_who_overrides_it():
    overridden = {}
    hooks = [name for klass in base.BaseDeepDetector.__mro__
             if klass.__module__.startswith("sklearn_flowod") for name in vars(klass)
             if name.startswith("_") and not name.startswith("__") and name != "_abc_impl"]
    for name in hooks:
        who = {sub.__name__ for sub in _package_subclasses(base.BaseDeepDetector)
               if name in vars(sub)}
        if who:
            overridden[name] = who
    text = base.__doc__.split("Extension points:")[1].split("\n\n``anomaly_score``")[0]
    listed = {}
    for item in re.split(r"\n- ", " ".join(text.split("\n"))):
        # "``_a`` (A, B) and ``_b`` (C): ..." or "``_a``, ``_b`` (A): ..."
        for names, owners in re.findall(r"((?:``_\w+``\s*(?:,|and)?\s*)+)\(([^)]*)\)", item):
            for name in re.findall(r"``(_\w+)``", names):
                listed[name] = {owner.strip() for owner in owners.split(",")}
    assert listed == overridden
