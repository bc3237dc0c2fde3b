"""A scikit-learn estimator base that does not import scikit-learn.

``LightEstimator`` and ``LightRegressorMixin`` give perfscope's models scikit-learn's
estimator API (``get_params``/``set_params``, the repr, the tags, R² ``score``), so
``clone``, model selection and scorers take them, while a loaded bundle predicts
without importing scikit-learn (that import costs seconds).
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from typing import Any


class LightEstimator:
    """Base of perfscope's models: scikit-learn's estimator API without importing scikit-learn.

    ``get_params`` and ``set_params`` (nested ``name__param`` included), the repr and the
    tags behave as in ``sklearn.base.BaseEstimator``, so scikit-learn's ``clone``, model
    selection and scorers take these models. scikit-learn is imported only by what
    needs it (fitting, the tags, ``score``, raising ``NotFittedError``): a loaded bundle
    predicts without it, and importing it costs seconds.
    """

    @classmethod
    def _get_param_names(cls) -> list[str]:
        if cls.__init__ is object.__init__:
            return []
        parameters = [p for p in inspect.signature(cls.__init__).parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD]
        if any(p.kind == p.VAR_POSITIONAL for p in parameters):
            raise RuntimeError(f"{cls.__name__}: estimators name every parameter in __init__ (no *args)")
        return sorted(p.name for p in parameters)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters by name; with ``deep``, those of nested estimators as ``name__param`` too."""
        out: dict[str, Any] = {}
        for key in self._get_param_names():
            value = getattr(self, key)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{key}__{k}", v) for k, v in value.get_params().items())
            out[key] = value
        return out

    def set_params(self, **params: Any) -> Any:
        """Set parameters (``name__param`` for a nested estimator's); returns self."""
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested: dict[str, dict[str, Any]] = defaultdict(dict)
        for key, value in params.items():
            key, delimiter, sub_key = key.partition("__")
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for estimator {type(self).__name__}; valid parameters "
                                 f"are {self._get_param_names()!r}")
            if delimiter:
                nested[key][sub_key] = value
            else:
                setattr(self, key, value)
                valid[key] = value
        for key, sub_params in nested.items():
            valid[key].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{k}={v!r}" for k, v in self.get_params(deep=False).items() if repr(v) != repr(defaults.get(k))]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import Tags, TargetTags  # seconds to import; only fitting needs it

        return Tags(estimator_type=None, target_tags=TargetTags(required=False), transformer_tags=None,
                    regressor_tags=None, classifier_tags=None)


class LightRegressorMixin:
    """``sklearn.base.RegressorMixin`` without importing scikit-learn: regressor tags and R² ``score``."""

    _estimator_type = "regressor"  # what scikit-learn before 1.6 reads instead of the tags

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import RegressorTags  # seconds to import; only fitting needs it

        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.estimator_type = "regressor"
        tags.regressor_tags = RegressorTags()
        tags.target_tags.required = True
        return tags

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Coefficient of determination R² of ``predict(X)`` against ``y``."""
        from sklearn.metrics import r2_score  # seconds to import; only fitting needs it

        return float(r2_score(y, self.predict(X), sample_weight=sample_weight))  # type: ignore[attr-defined]


def check_is_fitted(model: Any) -> None:
    """Raise scikit-learn's ``NotFittedError`` unless ``model`` has a fitted attribute (a name ending in ``_``)."""
    if not any(name.endswith("_") and not name.startswith("__") for name in vars(model)):
        from sklearn.exceptions import NotFittedError  # seconds to import; only fitting needs it

        raise NotFittedError(f"This {type(model).__name__} instance is not fitted yet: call fit first")
