"""Runware wire models of the tasks ltxserve speaks: the one place the LTX-2 parameter contract lives.

Every range, step, default and allowed value of a request parameter is declared here, on the
fields. Error messages (``ltxserve.protocol.validation``) and the JSON schema are derived from
these declarations, so changing a field here changes all three.

Decisions where Runware's documentation is silent:

- ``null`` means absent, at every level: an optional field takes its default, an unknown field
  is ignored, a required one is reported missing (JS clients send ``null`` for "unset").
- Types are strict: no ``"5"`` for 5, no ``1`` for ``true``. Integer fields do accept an
  integer-valued float (``5.0``): JSON has a single number type, JS clients cannot tell the two
  apart, and ``runware`` 0.5.24 types ``duration`` as a float.
- Defaults for parameters the contract leaves without one: 1280x704 (the size of Runware's own
  LTX-2 examples, 16:9 on the 64-pixel grid) and a 5 s duration (the unit Runware prices
  LTX-2 by).
- Unknown fields with a value are refused (``unsupported<Param>``) rather than ignored, so a
  client never believes a parameter took effect when it did not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeAlias
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue, models_json_schema
from pydantic_core import CoreSchema, ErrorDetails, InitErrorDetails, PydanticCustomError, core_schema

if TYPE_CHECKING:
    from ltxserve.config import Settings

#: The model id Runware gives LTX-2; the default of ``ValidationContext.model_ids``.
LTX2_MODEL_ID: Final = "lightricks:ltx@2"
#: Largest seed accepted (int64, what Runware documents for ``seed``).
SEED_MAX: Final = 2**63 - 1
#: Largest ``ttl`` accepted: keeps expiry times representable everywhere (about 68 years).
TTL_MAX: Final = 2**31 - 1
#: Longest URL accepted in ``webhookURL``, ``uploadEndpoint`` and image inputs (presigned S3
#: URLs with session tokens run past 2 KiB).
URL_MAX_LENGTH: Final = 8192

# Error types raised by our own validators; ``validation`` maps them onto Runware's code
# families (anything else becomes ``invalid<Param>``).
MISSING_ERROR: Final = "ltx_missing"
INVALID_ERROR: Final = "ltx_invalid"


# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class ValidationContext:
    """What validation needs beyond the contract: the deployment's model ids and limits."""

    model_ids: tuple[str, ...] = (LTX2_MODEL_ID,)
    #: Longest prompt (characters, after stripping); LTX-2's text encoder reads ~1024 tokens.
    max_prompt_length: int = 10_000
    #: Most tasks in one request; ``None``: no limit.
    max_tasks: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ValidationContext:
        return cls(model_ids=settings.served_model_ids(), max_tasks=settings.max_tasks_per_request)


_DEFAULT_CONTEXT: Final = ValidationContext()


def _context(info: ValidationInfo) -> ValidationContext:
    ctx = info.context
    return ctx if isinstance(ctx, ValidationContext) else _DEFAULT_CONTEXT


# --------------------------------------------------------------------------- scalar types


def _integral(value: object) -> object:
    """Accept ``5.0`` where an integer is expected (see module docstring); never bools or strings."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_INTEGRAL: Final = BeforeValidator(_integral)


def _text(value: str) -> str:
    """Refuse what breaks storage and encoders later: NUL characters and unpaired surrogates."""
    if "\x00" in value:
        raise PydanticCustomError(INVALID_ERROR, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError(
            INVALID_ERROR, "must be valid Unicode text (it contains an unpaired surrogate)"
        ) from None
    return value


Text: TypeAlias = Annotated[str, AfterValidator(_text)]

_UUID_ANY = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_UUID_V4 = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}")


def _uuid_v4(value: str) -> str:
    # Kept exactly as sent: clients route replies by comparing taskUUID strings.
    if not _UUID_V4.fullmatch(value):
        raise PydanticCustomError(
            INVALID_ERROR, "must be a UUID v4 such as 4d89f0f5-1277-48ee-875d-58e07a4b09d3"
        )
    return value


TaskUUID: TypeAlias = Annotated[
    str,
    AfterValidator(_uuid_v4),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": f"^{_UUID_V4.pattern}$"}),
]


def _url_problem(value: str) -> str | None:
    """Why ``value`` is not an absolute http(s) URL, or None. Kept verbatim (no normalising):
    presigned upload URLs stop working when re-encoded."""
    if len(value) > URL_MAX_LENGTH:
        return f"must be at most {URL_MAX_LENGTH} characters"
    if not (value.isascii() and value.isprintable()) or " " in value:
        return "must be a URL of printable ASCII characters without spaces"
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return "must be a valid http(s) URL"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return "must be an absolute http:// or https:// URL"
    return None


def _http_uri(value: str) -> str:
    problem = _url_problem(value)
    if problem is not None:
        raise PydanticCustomError(INVALID_ERROR, problem)
    return value


HttpURI: TypeAlias = Annotated[
    str,
    AfterValidator(_http_uri),
    WithJsonSchema({"type": "string", "format": "uri", "maxLength": URL_MAX_LENGTH}),
]


@dataclass(frozen=True)
class Step:
    """A float that must be a whole multiple of ``step`` (with float tolerance: 4.1 is a multiple
    of 0.01 even though ``4.1 % 0.01`` is not 0)."""

    step: float

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        result = handler(schema)
        result["multipleOf"] = self.step
        return result

    def _check(self, value: float) -> float:
        quotient = value / self.step
        if abs(quotient - round(quotient)) > 1e-6:
            raise PydanticCustomError(
                "multiple_of", "must be a multiple of {multiple_of}", {"multiple_of": self.step}
            )
        return value


# --------------------------------------------------------------------------- image inputs

ImageKind: TypeAlias = Literal["uuid", "url", "data_uri", "base64"]

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_DATA_URI_HEADER = re.compile(r"data:image/[A-Za-z0-9.+-]+(;[A-Za-z0-9=._+-]+)*;base64", re.IGNORECASE)
_IMAGE_KINDS_TEXT: Final = "an imageUUID from imageUpload, an http(s) URL, a data URI or base64 data"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image input, classified but not decoded: the service fetches/decodes it (SSRF-safe)."""

    kind: ImageKind
    value: str

    @classmethod
    def classify(cls, value: str) -> ImageRef:
        """Which of Runware's four image-input forms ``value`` is; ValueError if none."""
        if _UUID_ANY.fullmatch(value):
            return cls("uuid", value)
        lowered = value[:8].lower()
        if lowered.startswith(("http://", "https://")):
            problem = _url_problem(value)
            if problem is not None:
                raise ValueError(f"is an image URL that {problem}")
            return cls("url", value)
        if lowered.startswith("data:"):
            header, sep, payload = value.partition(",")
            if not sep or not _DATA_URI_HEADER.fullmatch(header) or not _BASE64.fullmatch(payload):
                raise ValueError("is not a base64 image data URI (data:image/<type>;base64,<data>)")
            return cls("data_uri", value)
        if _BASE64.fullmatch(value):
            return cls("base64", value)
        raise ValueError(f"must be an image: {_IMAGE_KINDS_TEXT}")


def _image_validator(*kinds: ImageKind) -> PlainValidator:
    def validate(value: object) -> ImageRef:
        if isinstance(value, ImageRef):  # already validated (model_copy, tests)
            return value
        if not isinstance(value, str):
            raise PydanticCustomError(INVALID_ERROR, "must be a string: " + _IMAGE_KINDS_TEXT)
        try:
            ref = ImageRef.classify(value)
        except ValueError as exc:
            raise PydanticCustomError(INVALID_ERROR, str(exc)) from None
        if ref.kind not in kinds:
            raise PydanticCustomError(INVALID_ERROR, "must be image data or a URL, not an imageUUID")
        return ref

    return PlainValidator(validate)


_IMAGE_SERIALIZER: Final = PlainSerializer(lambda ref: ref.value, return_type=str)

#: Wherever the contract says "Image input (UUID, URL, Data URI, or Base64)".
ImageInput: TypeAlias = Annotated[
    ImageRef,
    _image_validator("uuid", "url", "data_uri", "base64"),
    _IMAGE_SERIALIZER,
    WithJsonSchema({"type": "string", "description": f"Image input: {_IMAGE_KINDS_TEXT}."}),
]
#: What ``imageUpload`` stores: the image itself, never a reference to a stored one.
UploadImageInput: TypeAlias = Annotated[
    ImageRef,
    _image_validator("url", "data_uri", "base64"),
    _IMAGE_SERIALIZER,
    WithJsonSchema(
        {"type": "string", "description": "Image to store: a data URI, base64 data or an http(s) URL."}
    ),
]


def _frame(value: object) -> object:
    if isinstance(value, bool):  # Literal[0] would take False (False == 0)
        raise PydanticCustomError("literal_error", "must be 'first' or 0")
    return _integral(value)


_FIRST_FRAME_ONLY: Final = "LTX-2 takes one image, for the first frame"

#: This model conditions only the first frame, so only the two spellings of "first" exist.
Frame: TypeAlias = Annotated[Literal["first", 0], BeforeValidator(_frame)]


# --------------------------------------------------------------------------- models


class WireModel(BaseModel):
    """Base of every wire model: strict, wire (alias) names only, unknown fields refused."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
        field_title_generator=lambda name, info: info.alias or name,
    )

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


def _image_shorthand(key: str, data: Any) -> Any:
    """``"X"`` stands for ``{key: "X"}`` in a frameImages list."""
    return {key: data} if isinstance(data, str) else data


def _with_string_shorthand(schema: JsonSchemaValue) -> JsonSchemaValue:
    return {"anyOf": [{"type": "string", "description": f"Image input: {_IMAGE_KINDS_TEXT}."}, schema]}


class FrameImage(WireModel):
    """An ``inputs.frameImages`` item: ``{"image": X, "frame": "first"|0}`` or the plain ``X``."""

    image: ImageInput
    frame: Frame | None = Field(default=None, description=_FIRST_FRAME_ONLY)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return _image_shorthand("image", data)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return _with_string_shorthand(handler(schema))


class LegacyFrameImage(WireModel):
    """A top-level ``frameImages`` item as ``runware`` 0.5.24 sends it: ``{"inputImage": X, "frame": F}``."""

    image: ImageInput = Field(alias="inputImage")
    frame: Frame | None = Field(default=None, description=_FIRST_FRAME_ONLY)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return _image_shorthand("inputImage", data)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return _with_string_shorthand(handler(schema))


class VideoInputs(WireModel):
    """``inputs``: only ``frameImages`` (one first-frame image) exists for LTX-2."""

    frame_images: Annotated[list[FrameImage], Field(max_length=1)] | None = Field(
        default=None, alias="frameImages", description=_FIRST_FRAME_ONLY
    )


SafetyMode: TypeAlias = Literal["none", "fast", "full"]


class Safety(WireModel):
    """``safety``; see ``effective_mode`` for how the two fields combine."""

    check_content: bool = Field(default=False, alias="checkContent")
    mode: SafetyMode | None = None

    @property
    def effective_mode(self) -> SafetyMode:
        """An explicit ``mode`` wins (``fast``/``full`` turn checking on, ``none`` off); otherwise
        ``checkContent: true`` means ``fast``, as the contract says."""
        if self.mode is not None:
            return self.mode
        return "fast" if self.check_content else "none"


class VideoSettings(WireModel):
    """``settings``."""

    enhance_prompt: bool = Field(default=True, alias="enhancePrompt")


class LightricksSettings(WireModel):
    """``providerSettings.lightricks``."""

    generate_audio: bool = Field(default=True, alias="generateAudio")


class ProviderSettings(WireModel):
    """``providerSettings``: only the ``lightricks`` block applies to this model."""

    lightricks: LightricksSettings = LightricksSettings()


class VideoInferenceTask(WireModel):
    """A ``videoInference`` task for LTX-2, validated against the contract."""

    # API options
    task_type: Literal["videoInference"] = Field(alias="taskType")
    task_uuid: TaskUUID = Field(alias="taskUUID")
    output_type: Literal["URL"] = Field(default="URL", alias="outputType")
    output_format: Literal["MP4", "WEBM", "MOV"] = Field(default="MP4", alias="outputFormat")
    output_quality: Annotated[int, Field(ge=20, le=99), _INTEGRAL] = Field(default=95, alias="outputQuality")
    webhook_url: HttpURI | None = Field(default=None, alias="webhookURL")
    delivery_method: Literal["async"] = Field(default="async", alias="deliveryMethod")
    upload_endpoint: HttpURI | None = Field(default=None, alias="uploadEndpoint")
    safety: Safety = Safety()
    ttl: Annotated[int, Field(ge=60, le=TTL_MAX), _INTEGRAL] | None = None
    include_cost: bool = Field(default=False, alias="includeCost")
    number_results: Annotated[int, Field(ge=1, le=4), _INTEGRAL] = Field(default=1, alias="numberResults")
    # Inputs: the documented place, and the top-level list runware 0.5.24 sends.
    inputs: VideoInputs | None = None
    frame_images: Annotated[list[LegacyFrameImage], Field(max_length=1)] | None = Field(
        default=None,
        alias="frameImages",
        description=f"runware 0.5.24's form of inputs.frameImages. {_FIRST_FRAME_ONLY}",
    )
    # Generation parameters
    model: Text
    positive_prompt: Text = Field(alias="positivePrompt")
    negative_prompt: Text | None = Field(default=None, alias="negativePrompt")
    width: Annotated[int, Field(ge=128, le=2048, multiple_of=64), _INTEGRAL] = 1280
    height: Annotated[int, Field(ge=128, le=2048, multiple_of=64), _INTEGRAL] = 704
    duration: Annotated[int, Field(ge=1, le=20), _INTEGRAL] = 5
    fps: Annotated[int, Field(ge=1, le=120), _INTEGRAL] = 25
    steps: Annotated[int, Field(ge=1, le=100), _INTEGRAL] = 40
    cfg_scale: Annotated[float, Field(ge=1, le=20), Step(0.01)] = Field(default=4.0, alias="CFGScale")
    seed: Annotated[int, Field(ge=0, le=SEED_MAX), _INTEGRAL] | None = None
    settings: VideoSettings = VideoSettings()
    provider_settings: ProviderSettings = Field(default=ProviderSettings(), alias="providerSettings")

    @field_validator("model")
    @classmethod
    def _served_model(cls, value: str, info: ValidationInfo) -> str:
        allowed = _context(info).model_ids
        if value not in allowed:
            raise PydanticCustomError(
                INVALID_ERROR,
                "must be a model this server runs: {models}",
                {"models": ", ".join(allowed), "allowedValues": list(allowed)},
            )
        return value

    @field_validator("positive_prompt", "negative_prompt")
    @classmethod
    def _prompt(cls, value: str, info: ValidationInfo) -> str:
        limit = _context(info).max_prompt_length
        stripped = value.strip()
        if info.field_name == "positive_prompt" and not stripped:
            raise PydanticCustomError(INVALID_ERROR, "must not be empty")
        if len(stripped) > limit:
            raise PydanticCustomError(
                INVALID_ERROR,
                "must be at most {max} characters (it has {length})",
                {"max": limit, "length": len(stripped)},
            )
        return stripped if info.field_name == "positive_prompt" else value

    @model_validator(mode="wrap")
    @classmethod
    def _cross_field(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> VideoInferenceTask:
        """Rules over several fields, reported together with the per-field errors."""
        problems = _cross_field_problems(data) if isinstance(data, dict) else []
        try:
            task = handler(data)
        except ValidationError as exc:
            raised = [_reraisable(error) for error in exc.errors()]
            raise ValidationError.from_exception_data(exc.title, [*raised, *problems]) from None
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        if not isinstance(task, VideoInferenceTask):  # pragma: no cover - handler returns cls
            raise TypeError("unexpected validation result")
        return task

    @property
    def frame_image(self) -> ImageRef | None:
        """The first-frame image (image-to-video) from whichever of the two shapes was used."""
        for items in (self.inputs.frame_images if self.inputs else None, self.frame_images):
            if items:
                return items[0].image
        return None


def _reraisable(error: ErrorDetails) -> InitErrorDetails:
    """An error from ``handler`` in a form ``from_exception_data`` takes back (it only knows
    built-in error types by name, so each keeps its type, message and context as a custom error)."""
    # The message is already formatted and holds no client text, so re-formatting is a no-op.
    custom = PydanticCustomError(error["type"], error["msg"], error.get("ctx"))
    return InitErrorDetails(type=custom, loc=error["loc"], input=error["input"])


def _cross_field_problems(data: dict[Any, Any]) -> list[InitErrorDetails]:
    problems: list[InitErrorDetails] = []
    given = {key for key in ("width", "height") if data.get(key) is not None}
    if len(given) == 1:
        (present,) = given
        absent = "height" if present == "width" else "width"
        problems.append(
            InitErrorDetails(
                type=PydanticCustomError(
                    MISSING_ERROR,
                    "is required with {other}: give width and height together",
                    {"other": present},
                ),
                loc=(absent,),
                input=data,
            )
        )
    inputs = data.get("inputs")
    nested = inputs.get("frameImages") if isinstance(inputs, dict) else None
    top = data.get("frameImages")
    if isinstance(nested, list) and nested and isinstance(top, list) and top:
        problems.append(
            InitErrorDetails(
                type=PydanticCustomError(
                    INVALID_ERROR,
                    "must not be given together with inputs.frameImages: send one first-frame image",
                ),
                loc=("frameImages",),
                input=top,
            )
        )
    return problems


class AuthenticationTask(WireModel):
    """``authentication``: the first WebSocket message, or the first REST task without a Bearer header."""

    task_type: Literal["authentication"] = Field(alias="taskType")
    api_key: Annotated[Text, Field(min_length=1, max_length=1024)] = Field(alias="apiKey")
    connection_session_uuid: Annotated[Text, Field(max_length=128)] | None = Field(
        default=None, alias="connectionSessionUUID"
    )


class PingTask(WireModel):
    """``ping``: the clients' keepalive."""

    task_type: Literal["ping"] = Field(alias="taskType")
    ping: bool = True


class GetResponseTask(WireModel):
    """``getResponse``: poll the results of an earlier task."""

    task_type: Literal["getResponse"] = Field(alias="taskType")
    task_uuid: TaskUUID = Field(alias="taskUUID")


class ImageUploadTask(WireModel):
    """``imageUpload``: store an image and get an imageUUID usable as an image input."""

    task_type: Literal["imageUpload"] = Field(alias="taskType")
    task_uuid: TaskUUID = Field(alias="taskUUID")
    image: UploadImageInput


class TaskCancelTask(WireModel):
    """``taskCancel``: stop an earlier task; its unfinished results end as ``taskCancelled``."""

    task_type: Literal["taskCancel"] = Field(alias="taskType")
    task_uuid: TaskUUID = Field(alias="taskUUID")


class MediaStorageTask(WireModel):
    """``mediaStorage`` (runware-sdk 1.8.0's successor of imageUpload), for images:
    ``operation: "upload"`` with ``media`` returns ``mediaUUID``/``mediaURL`` (usable wherever
    an imageUUID is); ``operation: "delete"`` with ``mediaUUID`` removes an upload."""

    task_type: Literal["mediaStorage"] = Field(alias="taskType")
    task_uuid: TaskUUID = Field(alias="taskUUID")
    operation: Literal["upload", "delete"] = "upload"
    media: UploadImageInput | None = None
    media_uuid: TaskUUID | None = Field(default=None, alias="mediaUUID")

    @model_validator(mode="wrap")
    @classmethod
    def _operands(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> MediaStorageTask:
        """The operand the operation needs, reported at its own path with the other errors."""
        problems: list[InitErrorDetails] = []
        if isinstance(data, dict):
            needed = "mediaUUID" if data.get("operation") == "delete" else "media"
            if data.get(needed) is None:
                verb = "delete" if needed == "mediaUUID" else "upload"
                problems.append(
                    InitErrorDetails(
                        type=PydanticCustomError(MISSING_ERROR, "is required to {verb}", {"verb": verb}),
                        loc=(needed,),
                        input=data,
                    )
                )
        try:
            task = handler(data)
        except ValidationError as exc:
            raised = [_reraisable(error) for error in exc.errors()]
            raise ValidationError.from_exception_data(exc.title, [*raised, *problems]) from None
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        if not isinstance(task, MediaStorageTask):  # pragma: no cover - handler returns cls
            raise TypeError("unexpected validation result")
        return task


TaskModel: TypeAlias = (
    AuthenticationTask
    | PingTask
    | GetResponseTask
    | ImageUploadTask
    | MediaStorageTask
    | TaskCancelTask
    | VideoInferenceTask
)

#: taskType -> model; the task types ltxserve answers.
TASK_MODELS: Final[dict[str, type[WireModel]]] = {
    "authentication": AuthenticationTask,
    "ping": PingTask,
    "getResponse": GetResponseTask,
    "imageUpload": ImageUploadTask,
    "mediaStorage": MediaStorageTask,
    "taskCancel": TaskCancelTask,
    "videoInference": VideoInferenceTask,
}


# --------------------------------------------------------------------------- JSON schema


def request_json_schema(*, ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """JSON schema of a request body: an array of task objects (a single object is accepted too).

    For OpenAPI pass ``ref_template="#/components/schemas/{model}"`` and move ``$defs`` into
    ``components.schemas``.
    """
    refs, defs = models_json_schema(
        [(model, "validation") for model in TASK_MODELS.values()], by_alias=True, ref_template=ref_template
    )
    task_schema = {"oneOf": [refs[(model, "validation")] for model in TASK_MODELS.values()]}
    return {
        "anyOf": [{"type": "array", "minItems": 1, "items": task_schema}, task_schema],
        "$defs": defs.get("$defs", {}),
    }
