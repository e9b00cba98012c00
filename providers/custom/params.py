"""One argument of a declared tool: how an operator declares it (type, constraints, where it goes in the request)
and the pydantic type it becomes, so arguments are checked before anything is sent and the tool's input schema says
what is accepted.

    param = ParamDeclaration.model_validate({"name": "limit", "type": "integer", "minimum": 1, "maximum": 100})
    annotation, default = param.argument()      # (Annotated[int, Field(ge=1, le=100)] | None, None)
"""

from __future__ import annotations

import keyword
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import SchemaError

PARAM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# Argument names the tool function itself uses.
RESERVED_PARAMS = {"ctx", "idempotency_key"}
ParamType = Literal["string", "integer", "number", "boolean", "array", "object"]
Scalar = StrictStr | StrictBool | StrictInt | StrictFloat
_PYTHON_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
# An array argument holds at most this many items unless the declaration says fewer (a hostile caller cannot
# make one call carry an unbounded list upstream).
MAX_ARRAY_ITEMS = 1000
# How deep object and array parameters may nest: enough for real API bodies, bounded for the schema builder.
MAX_NESTING = 4


# Spelt outside the class: inside it, `type` names the parameter's `type` field.
ModelClass = type[BaseModel]


class Declaration(BaseModel):
    """Every part of a provider declaration. Unknown fields are errors: a misspelt `requried` must not silently make
    a parameter optional."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ParamDeclaration(Declaration):
    """One tool argument: its type and constraints (checked by pydantic before anything is sent) and where it goes."""

    name: str
    type: ParamType = "string"
    location: Literal["path", "query", "body"] | None = Field(default=None, alias="in")
    api_name: str | None = Field(default=None, min_length=1, max_length=128)
    description: str = ""
    required: bool | None = None
    default: Scalar | None = None
    enum: list[Scalar] | None = Field(default=None, min_length=1)
    pattern: str | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=1)
    minimum: float | None = None
    maximum: float | None = None
    # `array`: the type of its items (a parameter declaration without `name`), and how many.
    items: ItemDeclaration | None = None
    min_items: int | None = Field(default=None, ge=0, le=MAX_ARRAY_ITEMS)
    max_items: int | None = Field(default=None, ge=1, le=MAX_ARRAY_ITEMS)
    # `object`: its members, each a parameter declaration (`in` does not apply); unknown members are refused.
    properties: list[ParamDeclaration] | None = None

    @field_validator("name")
    @classmethod
    def _name_is_an_argument_name(cls, name: str) -> str:
        if not PARAM_NAME.match(name):
            raise ValueError("must be a letter followed by letters, digits or _ (at most 64)")
        if keyword.iskeyword(name) or name.startswith("model_") or name in RESERVED_PARAMS:
            raise ValueError("is reserved; choose another name and put the name the API expects in api_name")
        return name

    @field_validator("api_name")
    @classmethod
    def _api_name_is_printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must be printable text")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"is not a valid regular expression ({exc.msg})") from None
            try:
                TypeAdapter(Annotated[str, Field(pattern=pattern)])
            except SchemaError:
                raise ValueError(
                    "uses a regular-expression feature the argument validator lacks (look-around or "
                    "backreferences); input schemas should keep to what every JSON Schema engine knows"
                ) from None
        return pattern

    @model_validator(mode="after")
    def _constraints_fit_the_type(self) -> ParamDeclaration:
        _check_structure(self)
        string_only = {"pattern": self.pattern, "min_length": self.min_length, "max_length": self.max_length}
        numeric_only = {"minimum": self.minimum, "maximum": self.maximum}
        for key, given in string_only.items():
            if given is not None and self.type != "string":
                raise ValueError(f"{key} applies to string parameters only")
        for key, bound in numeric_only.items():
            if bound is not None and self.type not in ("integer", "number"):
                raise ValueError(f"{key} applies to integer and number parameters only")
        if self.type in ("array", "object") and (self.enum is not None or self.default is not None):
            raise ValueError(f"{self.type} parameters take no enum or default")
        if self.enum is not None and any(v is not None for v in {**string_only, **numeric_only}.values()):
            raise ValueError("enum cannot be combined with pattern, length or range constraints")
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise ValueError("min_length is greater than max_length")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum is greater than maximum")
        if self.required and self.default is not None:
            raise ValueError("a required parameter cannot have a default")
        value_type = TypeAdapter(self.value_annotation())
        for allowed in self.enum or []:
            _check_value(value_type, allowed, "an enum value")
        if self.default is not None:
            _check_value(value_type, self.default, "default")
        return self

    @property
    def wire_name(self) -> str:
        return self.api_name or self.name

    @property
    def is_required(self) -> bool:
        return bool(self.required) if self.required is not None else self.default is None and self.location == "path"

    def value_annotation(self, depth: int = 0) -> Any:
        """The argument's type with its constraints, as pydantic (and so the tool's input schema) sees it."""
        if self.type == "array":
            assert self.items is not None
            array_constraints: dict[str, Any] = {
                "description": self.description or None,
                "min_length": self.min_items,
                "max_length": self.max_items or MAX_ARRAY_ITEMS,
            }
            return Annotated[
                # The item type is built at run time, which a static checker cannot follow.
                list[self.items.value_annotation(depth + 1)],  # type: ignore[misc]
                Field(**{k: v for k, v in array_constraints.items() if v is not None}),
            ]
        if self.type == "object":
            return Annotated[self._object_model(depth), Field(description=self.description or None)]
        if self.enum is not None:
            base: Any = Literal[tuple(_as_type(v, self.type) for v in self.enum)]
        else:
            base = _PYTHON_TYPES[self.type]
        constraints: dict[str, Any] = {"description": self.description or None}
        if self.type == "string":
            min_length = self.min_length if self.min_length is not None else (1 if self.location == "path" else None)
            constraints |= {"pattern": self.pattern, "min_length": min_length, "max_length": self.max_length}
        elif self.type in ("integer", "number"):
            constraints |= {"ge": self.minimum, "le": self.maximum}
        if self.type == "integer":
            constraints = {
                k: (int(v) if k in ("ge", "le") and v is not None and float(v).is_integer() else v)
                for k, v in constraints.items()
            }
        return Annotated[base, Field(**{k: v for k, v in constraints.items() if v is not None})]

    def _object_model(self, depth: int) -> ModelClass:
        fields: dict[str, Any] = {}
        for member in self.properties or []:
            annotation = member.value_annotation(depth + 1)
            if member.required:
                fields[member.name] = (annotation, ...)
            elif member.default is not None:
                fields[member.name] = (annotation, _as_type(member.default, member.type))
            else:
                fields[member.name] = (annotation | None, None)
            if member.api_name:
                fields[member.name] = (fields[member.name][0], Field(fields[member.name][1], serialization_alias=member.api_name))
        name = "".join(part.capitalize() for part in self.name.split("_")) or "Object"
        return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)

    def argument(self) -> tuple[Any, Any]:
        """(annotation, default) of the tool function's parameter; `...` as the default means required."""
        annotation = self.value_annotation()
        if self.is_required:
            return annotation, ...
        if self.default is not None:
            return annotation, _as_type(self.default, self.type)
        return annotation | None, None


class ItemDeclaration(ParamDeclaration):
    """The items of an array parameter: a parameter declaration whose name is only used in messages."""

    name: str = "item"


ParamDeclaration.model_rebuild()


def _check_structure(param: ParamDeclaration, depth: int = 0) -> None:
    """`items` only for arrays, `properties` only for objects, and neither nested deeper than MAX_NESTING."""
    if depth > MAX_NESTING:
        raise ValueError(f"array and object parameters nest at most {MAX_NESTING} deep")
    if param.type == "array":
        if param.items is None:
            raise ValueError('an array parameter needs items (e.g. items = { type = "string" })')
        if param.min_items is not None and param.max_items is not None and param.min_items > param.max_items:
            raise ValueError("min_items is greater than max_items")
        _check_structure(param.items, depth + 1)
    elif param.items is not None or param.min_items is not None or param.max_items is not None:
        raise ValueError("items, min_items and max_items apply to array parameters only")
    if param.type == "object":
        if not param.properties:
            raise ValueError("an object parameter needs properties (its members, each with a name and a type)")
        names = [member.name for member in param.properties]
        if len(set(names)) != len(names):
            raise ValueError("an object parameter declares a member twice")
        for member in param.properties:
            if member.location is not None:
                raise ValueError(f"member {member.name!r}: `in` applies to top-level parameters only")
            _check_structure(member, depth + 1)
    elif param.properties is not None:
        raise ValueError("properties apply to object parameters only")


def _as_type(value: Any, type_name: str) -> Any:
    # TOML/JSON may spell a number default as 5 for a `number` parameter; keep enum and default values typed.
    return float(value) if type_name == "number" and isinstance(value, int) and not isinstance(value, bool) else value


def _check_value(adapter: TypeAdapter, value: Any, what: str) -> None:
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError:
        raise ValueError(f"{what} does not match the parameter's type and constraints") from None
