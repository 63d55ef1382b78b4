"""Let pandas read back the nested Arrow dtypes of the operator's list columns.

The operator's score, embedding and multi-label columns are ``pd.ArrowDtype`` lists.
``DataFrame.to_parquet`` (pandas or dask) records their dtype in the file's pandas
metadata as a string such as ``"list<item: float>[pyarrow]"``, and pandas cannot parse it
back: ``pd.read_parquet`` and ``dd.read_parquet`` fail with ``data type
'list<item: float>[pyarrow]' not understood``. Importing this package registers a parser
for those strings with pandas' dtype registry, so files written by
``classifier(ddf).to_parquet(path)`` read back as the same dtypes in any process that has
imported ``nemo_cls_dask`` (dask workers included). A process that has not can read them
with ``pyarrow.parquet.read_table(path).to_pandas(ignore_metadata=True)``.

Only list, large-list and struct types of Arrow's scalar types are parsed; anything else
is left to pandas (which raises as before).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

_SUFFIX = "[pyarrow]"
_NESTED = {"list": pa.list_, "large_list": pa.large_list}


def parse_arrow_type(text: str) -> pa.DataType:
    """The Arrow type ``str(arrow_type)`` printed, for lists, structs and scalars."""
    parsed, rest = _parse(text.strip())
    if rest.strip():
        raise ValueError(f"unexpected {rest!r} after an Arrow type in {text!r}")
    return parsed


def _parse(text: str) -> tuple[pa.DataType, str]:
    end = min((i for i in map(text.find, "<,>") if i >= 0), default=len(text))
    if end == len(text) or text[end] != "<":
        return pa.type_for_alias(text[:end].strip()), text[end:]
    name, rest = text[:end].strip(), text[end + 1 :]
    fields = []
    while True:
        field_name, colon, rest = rest.partition(":")
        if not colon:
            raise ValueError(f"expected 'name: type' in {text!r}")
        field_type, rest = _parse(rest.lstrip())
        fields.append(pa.field(field_name.strip(), field_type))
        rest = rest.lstrip()
        if rest.startswith(","):
            rest = rest[1:]
            continue
        if not rest.startswith(">"):
            raise ValueError(f"expected '>' in {text!r}")
        rest = rest[1:]
        break
    if name in _NESTED and len(fields) == 1:
        return _NESTED[name](fields[0]), rest
    if name == "struct":
        return pa.struct(fields), rest
    raise ValueError(f"unsupported Arrow type {name!r} in {text!r}")


@pd.api.extensions.register_extension_dtype
class NestedArrowDtypeParser(pd.api.extensions.ExtensionDtype):
    """Registered with pandas only for :meth:`construct_from_string`; never instantiated.

    ``pandas_dtype("list<item: float>[pyarrow]")`` then gives
    ``pd.ArrowDtype(pa.list_(pa.float32()))``.
    """

    name = "nemo-cls-dask-nested-arrow"
    type = object

    @classmethod
    def construct_from_string(cls, string: str) -> pd.ArrowDtype:
        if not isinstance(string, str) or not string.endswith(_SUFFIX) or "<" not in string:
            raise TypeError(f"not a nested Arrow dtype: {string!r}")
        try:
            return pd.ArrowDtype(parse_arrow_type(string[: -len(_SUFFIX)]))
        except (ValueError, KeyError, pa.ArrowException) as error:
            raise TypeError(f"cannot parse {string!r}: {error}") from None

    @classmethod
    def construct_array_type(cls):  # pragma: no cover - never instantiated
        raise NotImplementedError
