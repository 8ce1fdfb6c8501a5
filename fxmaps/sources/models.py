"""Models by name: torchvision names, ``timm:NAME``, ``file.py:Name``, ``package.module:Name``.

Weights come from a local state-dict file, or with ``weights="DEFAULT"`` from
torchvision's (or timm's) own download, which needs internet access.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from fxmaps.errors import ModelLoadError, close_matches
from fxmaps.files import unreadable

__all__ = ["RANDOM_WEIGHTS", "LoadedModel", "load_model", "load_weights"]

_DEFAULT_INPUT = (3, 224, 224)

RANDOM_WEIGHTS = "random weights (untrained)"
"""What a model built without loading weights has, as reports and figures say it."""


@dataclass(frozen=True)
class LoadedModel:
    """A model built from a specification, with the input size it expects."""

    model: nn.Module
    spec: str
    input_size: tuple[int, ...]
    """Per-sample input shape, for example ``(3, 224, 224)``."""
    example: Any = None
    """What the model takes, when its factory returned ``(model, example_input)``."""
    weights: str = RANDOM_WEIGHTS
    """Which weights the model has, in words: :data:`RANDOM_WEIGHTS`, the pretrained
    weights' enum (``ResNet18_Weights.IMAGENET1K_V1``) or timm name, or the file loaded."""


def load_model(spec: str, *, weights: str | Path | None = None) -> LoadedModel:
    """Build the model that ``spec`` names, with random weights unless ``weights`` is given.

    Args:
        spec: A torchvision model name (``resnet18``), ``timm:NAME`` (timm must be
            installed), ``path/to/file.py:Name`` or ``package.module:Name``, where
            ``Name`` is an ``nn.Module`` class or a factory taking no arguments.
        weights: A local state-dict file, or ``"DEFAULT"`` for the library's own
            pretrained weights (downloaded; needs internet).

    Raises:
        ModelLoadError: The model or its weights cannot be loaded; the message
            says why and what is valid.
    """
    default = str(weights) == "DEFAULT"
    if spec.startswith("timm:"):
        loaded = _timm_model(spec, pretrained=default)
    elif ":" in spec:
        loaded = _custom_model(spec)
        if default:
            raise ModelLoadError(
                f"weights='DEFAULT' needs a torchvision or timm model, not {spec!r}", spec=spec
            )
    else:
        loaded = _torchvision_model(spec, pretrained=default)
    if weights is not None and not default:
        load_weights(loaded.model, weights)
        return replace(loaded, weights=f"weights from {Path(weights).name}")
    return loaded


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict into ``model``, strictly.

    Loading never executes pickled code (``weights_only=True``). Checkpoints
    that wrap the state dict under ``state_dict`` or ``model``, and keys with a
    ``module.`` prefix (``DataParallel``), are accepted.

    Raises:
        ModelLoadError: The file is missing or unreadable, or its keys or shapes
            do not match the model (the first missing and unexpected keys are listed).
    """
    path = Path(path)
    if path.is_dir():
        raise ModelLoadError(
            f"{str(path)!r} is a folder, not a weights file; name the state-dict file in it "
            "(saved with torch.save(model.state_dict(), path))",
            spec=str(path),
        )
    if not path.is_file():
        raise ModelLoadError(f"weights file {str(path)!r} does not exist", spec=str(path))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelLoadError(
            f"cannot read weights file {str(path)!r}: {_unreadable(err)}", spec=str(path)
        ) from err
    state = _state_dict_of(checkpoint, path)
    expected = model.state_dict()
    problems = []
    if missing := [k for k in expected if k not in state]:
        problems.append(f"missing keys {_first(missing)}")
    if unexpected := [k for k in state if k not in expected]:
        problems.append(f"unexpected keys {_first(unexpected)}")
    if mismatched := [
        f"{k!r} {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]:
        problems.append(f"shape mismatches {_first(mismatched, quote=False)}")
    if problems:
        raise ModelLoadError(
            f"weights in {str(path)!r} do not match {type(model).__name__}: "
            f"{'; '.join(problems)}. Was the file saved from this model?",
            spec=str(path),
        )
    model.load_state_dict(state, strict=True)


def _state_dict_of(checkpoint: Any, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), Mapping):
                checkpoint = checkpoint[key]
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            prefix = "module." if all(str(k).startswith("module.") for k in checkpoint) else ""
            return {str(k).removeprefix(prefix): v for k, v in checkpoint.items()}
    raise ModelLoadError(
        f"{str(path)!r} holds no state dict (a mapping of names to tensors); "
        "save one with torch.save(model.state_dict(), path)",
        spec=str(path),
    )


def _unreadable(err: Exception) -> str:
    """Why ``torch.load`` failed, in words, with what to do."""
    why = unreadable(err)
    resave = "save the state dict with torch.save(model.state_dict(), path)"
    if why.startswith("it holds pickled"):
        return f"{why} (a whole model saved with torch.save(model), say); {resave}"
    if why.startswith("it is truncated"):
        return f"{why}; {resave} again"
    return f"it is not a file written by torch.save ({why}); {resave}"


def _first(keys: list[str], n: int = 5, *, quote: bool = True) -> str:
    shown = ", ".join(repr(k) if quote else k for k in keys[:n])
    return f"{shown} (and {len(keys) - n} more)" if len(keys) > n else shown


def _torchvision_model(name: str, *, pretrained: bool) -> LoadedModel:
    names = torchvision.models.list_models()
    if name not in names:
        matches = close_matches(name, names)
        hint = f"; did you mean {', '.join(matches)}?" if matches else ""
        raise ModelLoadError(
            f"{name!r} is not a torchvision model{hint} Other forms: timm:NAME, "
            "path/to/file.py:Name, package.module:Name",
            spec=name,
            candidates=tuple(matches),
        )
    try:
        model = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None)
    except Exception as err:
        raise ModelLoadError(
            f"cannot build torchvision model {name!r}: {err}"
            + (" (downloading weights needs internet access)" if pretrained else ""),
            spec=name,
        ) from err
    label = RANDOM_WEIGHTS
    if pretrained:
        label = f"pretrained weights {torchvision.models.get_model_weights(name).DEFAULT}"
    return LoadedModel(model, name, _torchvision_input_size(name), weights=label)


def _torchvision_input_size(name: str) -> tuple[int, ...]:
    """The crop size of the model's default weights (metadata only, nothing downloaded)."""
    try:
        transforms = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    except Exception:
        return _DEFAULT_INPUT
    crop = getattr(transforms, "crop_size", None)
    if isinstance(crop, (list, tuple)) and len(crop) == 1:
        return (3, int(crop[0]), int(crop[0]))
    if isinstance(crop, (list, tuple)) and len(crop) == 2:
        return (3, int(crop[0]), int(crop[1]))
    return _DEFAULT_INPUT


def _timm_model(spec: str, *, pretrained: bool) -> LoadedModel:
    name = spec.removeprefix("timm:")
    try:
        import timm
    except ImportError as err:
        raise ModelLoadError(
            f"{spec!r} needs timm, which is not installed: pip install timm", spec=spec
        ) from err
    if name not in timm.list_models():
        matches = close_matches(name, timm.list_models())
        hint = f"; did you mean {', '.join(matches)}?" if matches else ""
        raise ModelLoadError(
            f"{name!r} is not a timm model{hint}", spec=spec, candidates=tuple(matches)
        )
    try:
        model = timm.create_model(name, pretrained=pretrained)
    except Exception as err:
        raise ModelLoadError(f"cannot build timm model {name!r}: {err}", spec=spec) from err
    config = getattr(model, "pretrained_cfg", None) or {}
    size = tuple(int(d) for d in config.get("input_size", _DEFAULT_INPUT))
    label = f"pretrained weights of timm's {name}" if pretrained else RANDOM_WEIGHTS
    return LoadedModel(model, spec, size, weights=label)


def _custom_model(spec: str) -> LoadedModel:
    location, _, attr = spec.rpartition(":")
    if not location or not attr:
        raise ModelLoadError(
            f"{spec!r} is not of the form path/to/file.py:Name or package.module:Name", spec=spec
        )
    imported = _import_file if location.endswith(".py") else _import_module
    module = imported(location, spec)
    if not hasattr(module, attr):
        public = [n for n in vars(module) if not n.startswith("_")]
        matches = close_matches(attr, public)
        hint = f"; did you mean {', '.join(matches)}?" if matches else ""
        raise ModelLoadError(
            f"{location!r} has no attribute {attr!r}{hint}", spec=spec, candidates=tuple(matches)
        )
    model, example = _instantiate(getattr(module, attr), spec)
    label = f"{RANDOM_WEIGHTS} unless {attr} loads its own"
    return LoadedModel(model, spec, _DEFAULT_INPUT, example, weights=label)


def _import_file(location: str, spec: str) -> Any:
    path = Path(location)
    if not path.is_file():
        raise ModelLoadError(f"model file {location!r} does not exist", spec=spec)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"fxmaps_user_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelLoadError(f"cannot import {location!r} as a Python file", spec=spec)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as err:
        del sys.modules[name]
        raise ModelLoadError(_import_failed(location, err), spec=spec) from err
    return module


def _import_failed(location: str, err: BaseException) -> str:
    if isinstance(err, SyntaxError):
        return (
            f"importing {location!r} failed: SyntaxError at line {err.lineno}: {err.msg}; "
            "fix the file (python -m py_compile shows the same error)"
        )
    if isinstance(err, SystemExit):
        return (
            f"importing {location!r} ran code that exited (SystemExit: {err.code}); put the "
            "file's script code under if __name__ == '__main__':"
        )
    return f"importing {location!r} failed: {type(err).__name__}: {err}"


def _import_module(location: str, spec: str) -> Any:
    """Import ``package.module`` as ``python -m`` would: the current folder is on
    ``sys.path`` (a console script has only its own folder there)."""
    here = Path.cwd()
    if all(Path(entry or ".").absolute() != here for entry in sys.path):
        sys.path.insert(0, str(here))
        importlib.invalidate_caches()
    try:
        return importlib.import_module(location)
    except ImportError as err:
        raise ModelLoadError(f"cannot import module {location!r}: {err}", spec=spec) from err
    except (Exception, SystemExit) as err:
        raise ModelLoadError(_import_failed(location, err), spec=spec) from err


def _instantiate(obj: Any, spec: str) -> tuple[nn.Module, Any]:
    """The model, and the example input its factory gave with it (or ``None``)."""
    if isinstance(obj, nn.Module):
        return obj, None
    if isinstance(obj, type) and not issubclass(obj, nn.Module):
        raise ModelLoadError(
            f"{spec!r} is the class {obj.__name__}, which is not an nn.Module; point to an "
            "nn.Module class or a factory function that returns a model",
            spec=spec,
        )
    if not callable(obj):
        raise ModelLoadError(
            f"{spec!r} is of type {type(obj).__name__}, neither an nn.Module class nor a factory "
            "function; point to one of those",
            spec=spec,
        )
    if _needs_arguments(obj):
        raise ModelLoadError(
            f"{spec!r} cannot be built without arguments{_signature(obj)}; point to a "
            "factory function that takes none",
            spec=spec,
        )
    try:
        built = obj()
    except SystemExit as err:
        raise ModelLoadError(
            f"building {spec!r} exited (SystemExit: {err.code}) instead of returning a model; "
            "a factory must return the model, so move the sys.exit() out of it",
            spec=spec,
        ) from err
    except Exception as err:
        raise ModelLoadError(
            f"building {spec!r} failed: {type(err).__name__}: {' '.join(str(err).split())}",
            spec=spec,
        ) from err
    pair = isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], nn.Module)
    model, example = built if pair else (built, None)
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"{spec!r} returned {type(model).__name__}, not an nn.Module; point to a factory "
            "that returns the model, or (model, example_input)",
            spec=spec,
        )
    return model, example


def _needs_arguments(obj: Any) -> bool:
    try:
        inspect.signature(obj).bind()
    except TypeError:
        return True
    except ValueError:  # no signature to read (some builtins): try calling it
        return False
    return False


def _signature(obj: Any) -> str:
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return ""
    return f" ({', '.join(parameters)})"
