"""Media I/O: encode generated video (+audio) and decode untrusted input images.

Knows nothing above it (no torch, HTTP or settings): limits arrive as arguments.
"""

from ltxserve.media.encode import (
    DEFAULT_QUALITY,
    MAX_FPS,
    MAX_QUALITY,
    MIN_FPS,
    MIN_QUALITY,
    EncodedVideo,
    EncodeError,
    EncoderPlan,
    QualitySettings,
    VideoFormat,
    encode_video,
    encoder_plan,
    quality_settings,
)
from ltxserve.media.images import (
    ALLOWED_FORMATS,
    ImageDecodeError,
    decode_base64,
    decode_image,
    encode_png,
    fit_cover,
    looks_like_base64,
    parse_data_uri,
)
from ltxserve.media.probe import ProbeError, ProbeInfo, probe

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_QUALITY",
    "MAX_FPS",
    "MAX_QUALITY",
    "MIN_FPS",
    "MIN_QUALITY",
    "EncodeError",
    "EncodedVideo",
    "EncoderPlan",
    "ImageDecodeError",
    "ProbeError",
    "ProbeInfo",
    "QualitySettings",
    "VideoFormat",
    "decode_base64",
    "decode_image",
    "encode_png",
    "encode_video",
    "encoder_plan",
    "fit_cover",
    "looks_like_base64",
    "parse_data_uri",
    "probe",
    "quality_settings",
]
