"""scikit-learn's parameter protocol (``get_params``/``set_params``/``repr``) without scikit-learn.

The light estimators keep their constructor arguments untouched as attributes of the
same name; this mixin reads the names from the ``__init__`` signature, so
``sklearn.base.clone`` and grid searches work on them.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import InputError


class ParamsMixin:
    """``get_params``/``set_params`` over the ``__init__`` parameters, nested with ``__``."""

    @classmethod
    def _param_names(cls) -> list[str]:
        parameters = inspect.signature(cls.__init__).parameters
        return [name for name, p in parameters.items() if name != "self" and p.kind is not p.VAR_KEYWORD]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters; with ``deep``, also ``name__sub`` of nested estimators."""
        params = {name: getattr(self, name) for name in self._param_names()}
        if deep:
            for name, value in list(params.items()):
                if hasattr(value, "get_params") and not isinstance(value, type):
                    params.update({f"{name}__{key}": sub for key, sub in value.get_params(deep=True).items()})
        return params

    def set_params(self, **params: Any) -> Any:
        """Set constructor parameters (``name__sub`` reaches into a nested estimator); returns self."""
        valid = set(self._param_names())
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise InputError(f"Invalid parameter {name!r} for {type(self).__name__}; valid: {sorted(valid)}.")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, values in nested.items():
            getattr(self, name).set_params(**values)
        return self

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        shown = []
        for name, value in self.get_params(deep=False).items():
            default = defaults.get(name, inspect.Parameter.empty)
            if default is inspect.Parameter.empty or _differs(value, default):
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


def _differs(value: Any, default: Any) -> bool:
    try:
        return bool(value != default)
    except (TypeError, ValueError):  # arrays and other objects without a plain ==
        return True
