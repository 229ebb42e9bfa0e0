"""scikit-learn's full estimator check suite, with no expected failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from .conftest import small_detectors


@parametrize_with_checks(small_detectors())
def test_sklearn_compatible(estimator, check):
    check(estimator)
