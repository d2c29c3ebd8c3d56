"""THE backend table: what runs the networks, on which device, at which
precision; what this machine supports; what `auto` picks and why. Config
checks, model loading, OpenVINO, PyTorch, the manifest and `doctor` all read
it here (rtmlib keeps the same choice in one small table).

No torch: whether a GPU exists is asked of torch only where the machine has
an NVIDIA device node at all."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.errors import RunnerError


@dataclass(frozen=True)
class Row:
    devices: tuple[str, ...]       # device kinds it runs on
    precisions: tuple[str, ...]    # what it runs (f32 bit for bit; the others as noted)
    runtime: tuple[str, ...]       # libraries whose version changes its numbers
    onnx_files: bool               # runs an ONNX file (an export, or a user's model file)
    cpu_needs: tuple[tuple[str, str], ...] = ()  # (precision, the CPU capability it runs on natively)
    tflite_files: bool = False     # reads a TFLite file (MediaPipe's models) as it is


TABLE: dict[str, Row] = {
    "pytorch": Row(("cpu", "cuda"), ("f32", "bf16", "f16"), (), False),              # f16 / bf16: torch.autocast
    "onnxruntime": Row(("cpu",), ("f32",), ("onnxruntime",), True),                  # the CPU provider
    "openvino": Row(("cpu",), ("f32", "bf16", "f16", "int8"), ("openvino",), True,   # int8 by NNCF
                    (("bf16", "BF16"), ("f16", "FP16")), True),                       # never emulated: refused
}
BACKENDS = tuple(TABLE)
PRECISIONS = ("f32", "bf16", "f16", "int8")
DEVICES = ("auto", "cpu", "cuda")

# backend=auto, by (device kind, precision): float32 keeps parity; a reduced
# precision is only ever asked for, and goes where it runs.
AUTO: dict[tuple[str, str], tuple[str, str]] = {
    ("cpu", "f32"): ("onnxruntime", "the CPU, float32: ONNX Runtime (OpenVINO f32 measured no faster, BENCHMARKS.md)"),
    ("cuda", "f32"): ("pytorch", "a CUDA GPU, where PyTorch runs the networks"),
    ("cpu", "bf16"): ("openvino", "bf16 asked for, on the CPU: OpenVINO"),
    ("cpu", "f16"): ("openvino", "f16 asked for, on the CPU: OpenVINO"),
    ("cpu", "int8"): ("openvino", "int8 asked for: OpenVINO (NNCF)"),
    ("cuda", "bf16"): ("pytorch", "bf16 asked for, on a CUDA GPU: PyTorch autocast"),
    ("cuda", "f16"): ("pytorch", "f16 asked for, on a CUDA GPU: PyTorch autocast"),
    ("cuda", "int8"): ("openvino", "int8 asked for: OpenVINO (NNCF), which runs on the CPU"),
}


def cuda_available() -> bool:
    """Whether torch sees a GPU; without an NVIDIA device node, no (and torch stays unimported)."""
    if not any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/gpus")):
        return False
    import torch
    return torch.cuda.is_available()


def resolve_device(device_cfg) -> str:
    kind = str(device_cfg.type)
    if kind == "auto":
        return "cuda:0" if cuda_available() else "cpu"
    if kind == "cuda":
        if not cuda_available():
            raise RunnerError("device=cuda, but torch sees no GPU (a CPU-only torch, or no driver): "
                              "use device=cpu or device=auto")
        return f"cuda:{device_cfg.get('index', 0)}"
    if kind == "cpu":
        return "cpu"
    raise RunnerError(f"device type {kind!r} is unknown: use device=auto, device=cpu or device=cuda")


@dataclass(frozen=True)
class Backend:
    """What runs the networks, at which precision, and why (for the manifest).
    `calibration` is the int8 calibration folder and `calibrated` its content digest."""
    name: str
    precision: str = "f32"
    why: str = ""
    calibration: str | None = None
    calibrated: str | None = None

    @property
    def runs_onnx(self) -> bool:
        return TABLE[self.name].onnx_files

    def runtime_libs(self) -> tuple[str, ...]:
        """The runtime libraries whose versions change this backend's numbers."""
        return TABLE[self.name].runtime + (("nncf",) if self.precision == "int8" else ())

    def runs_on(self, device: str) -> dict:
        """What of the backend and the device a model's results depend on: the
        backend, the kind of device (a CPU and a GPU add float32 terms in other
        orders) and the precision. (Its runtime's version: runtime_libs.)"""
        return {"backend": self.name, "device": device.split(":")[0], "precision": self.precision}

    def describe(self) -> dict:
        return {"name": self.name, "precision": self.precision, "why": self.why,
                **({"calibration": self.calibration, "calibrated": self.calibrated}
                   if self.precision == "int8" else {})}

    @classmethod
    def recorded(cls, described: dict) -> "Backend":
        """The backend a manifest recorded (describe()), taken as it is."""
        return cls(described["name"], described.get("precision", "f32"), f"recorded: {described.get('why', '')}",
                   described.get("calibration"), described.get("calibrated"))


def check(name: str, precision: str, device: str, onnx_files: bool = False, tflite_files: str | None = None) -> None:
    """One line when the table says no (or this machine cannot). `tflite_files`:
    the key of a model file in TFLite format, if the run has one."""
    row = TABLE[name]
    if onnx_files and not row.onnx_files:
        raise RunnerError(f"backend={name} does not run ONNX model files (detect/model=onnx, pose/model=onnx): "
                          "use backend=onnxruntime or backend=openvino")
    if tflite_files and not row.tflite_files:
        readers = " or ".join(f"backend={b}" for b, r in TABLE.items() if r.tflite_files)
        raise RunnerError(f"backend={name} does not read TFLite files ({tflite_files}): use {readers} (or "
                          "backend=auto), or pass the model's .onnx file")
    if precision not in row.precisions:
        if precision == "int8":
            raise RunnerError("backend.precision=int8 is OpenVINO's (NNCF): use backend=openvino")
        raise RunnerError(f"backend={name} runs float32 only: use backend=openvino for backend.precision={precision}, "
                          "or backend.precision=f32")
    if device.split(":")[0] not in row.devices:
        raise RunnerError(f"backend={name} runs on the CPU here: use device=cpu, or backend=pytorch on the GPU")
    check_machine(name, precision)


def check_machine(name: str, precision: str) -> None:
    """One line when this machine's CPU cannot run `precision` natively on `name`."""
    wanted = dict(TABLE[name].cpu_needs).get(precision)
    if wanted is None:
        return
    found = cpu_capabilities(name)
    if wanted not in found:
        raise RunnerError(f"backend.precision={precision}: this CPU has no native {precision} support "
                          f"({name} finds {', '.join(found)}): use backend.precision=f32 or int8")


def cpu_capabilities(name: str) -> list[str]:
    """What `name` says this CPU runs natively (asked only of a backend with cpu_needs)."""
    from runner.backends.openvino import capabilities
    return capabilities() if name == "openvino" else []


def machine_precisions(name: str) -> list[str]:
    """The precisions `name` runs on this machine's CPU."""
    needs = dict(TABLE[name].cpu_needs)
    found = cpu_capabilities(name) if needs else []
    return [p for p in TABLE[name].precisions if p not in needs or needs[p] in found]


def choose_backend(backend_cfg, device: str, onnx_files: bool = False, tflite_files: str | None = None) -> Backend:
    """The backend of a run (backend.name, backend.precision); `onnx_files`: some
    model of the run is a network file, which only the ONNX runtimes run;
    `tflite_files`: the key of one in TFLite format, which only OpenVINO reads."""
    name, precision = str(backend_cfg.name), str(backend_cfg.get("precision", "f32"))
    if precision not in PRECISIONS:
        raise RunnerError(f"backend.precision={precision} is unknown: use " + ", ".join(PRECISIONS))
    if name == "auto":
        name, why = AUTO[(device.split(":")[0], precision)]
        if tflite_files and not TABLE[name].tflite_files:
            name = next(b for b, row in TABLE.items() if row.tflite_files and precision in row.precisions)
            why = f"a TFLite model file ({tflite_files}), which {name} reads as it is"
        if onnx_files and not TABLE[name].onnx_files:
            raise RunnerError("backend=auto chose PyTorch for this GPU, which does not run ONNX model files: pass "
                              "device=cpu (ONNX Runtime or OpenVINO)")
        why = f"auto: {why}"
    elif name in TABLE:
        why = f"backend={name} asked for"
    else:
        raise RunnerError(f"backend {name!r} is unknown: use backend=auto, "
                          + ", ".join(f"backend={b}" for b in BACKENDS))
    check(name, precision, device, onnx_files, tflite_files)
    calibration = calibrated = None
    if precision == "int8":
        from runner.backends.openvino import calibration_digest
        calibration = backend_cfg.get("calibration")
        calibrated = calibration_digest(calibration)
        calibration = str(Path(str(calibration)).expanduser().resolve())
    return Backend(name, precision, why, calibration, calibrated)
