"""A stand-in for Colab's Python 3.11 runtime (version 2025.07), built here from Colab's published package list.

It holds, at Colab's versions (colab/pip-freeze-2025.07.txt): Colab's kernel and notebook stack, every package
that the course's Colab lock pins (numpy, TensorFlow 2.18, Keras 3, protobuf, jax, ...) and what those need,
plus a small ``google.colab`` module that the kernel imports at start, as Colab's does. uv builds it from its
cache, so a rerun is fast; the first build downloads Colab's packages (TensorFlow 2.18 is most of it).
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
from scripts import colab_packages  # noqa: E402

from helpers import colab  # noqa: E402

CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
GOOGLE_COLAB = '''"""Stand-in for Colab's google.colab, for the course's tests: its presence tells a notebook it runs
on Colab. The real package serves Colab's front end; the course calls none of it."""
'''
# jax (which TFF imports) imports google.colab.output once google.colab is importable; it calls it only in its
# debugger, which the course does not use.
GOOGLE_COLAB_OUTPUT = '''"""Stand-in for Colab's google.colab.output (JavaScript in Colab's front end): empty here."""
'''


def add_google_colab(site):
    """Put the stand-in ``google.colab`` (with its ``output``) into the site-packages folder ``site``."""
    (site / "google" / "colab").mkdir(parents=True, exist_ok=True)
    (site / "google" / "colab" / "__init__.py").write_text(GOOGLE_COLAB)
    (site / "google" / "colab" / "output.py").write_text(GOOGLE_COLAB_OUTPUT)


def uv():
    """The uv executable: on the PATH, or the one scripts/lock.sh installs into the cache."""
    found = shutil.which("uv")
    if found:
        return found
    tools = CACHE / "fl-course-uv"  # where scripts/lock.sh puts it
    if not (tools / "bin" / "uv").exists():
        subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True)
        subprocess.run([str(tools / "bin" / "python"), "-m", "pip", "install", "-q", "uv"], check=True)
    return str(tools / "bin" / "uv")


def base_python():
    """The Python 3.11 this environment was made from (Colab 2025.07 runs 3.11.13)."""
    return getattr(sys, "_base_executable", sys.executable)


def wanted_packages():
    """Colab's packages the stand-in holds: the kernel stack and every name in the course's Colab lock."""
    versions = colab_packages.colab_versions()
    names = set(colab.KERNEL_STACK) | {"pip", "setuptools", "wheel"} | set(colab_packages.locked())
    return sorted(f"{name}=={versions[name]}" for name in names if name in versions)


def resolve(folder):
    """Colab's versions of :func:`wanted_packages` and of all they need, as a list pinned with ``==``."""
    wanted, everything, out = folder / "wanted.txt", folder / "colab-pins.txt", folder / "standin.txt"
    wanted.write_text("\n".join(wanted_packages()) + "\n")
    everything.write_text("".join(f"{n}=={v}\n" for n, v in colab_packages.colab_versions().items()))
    subprocess.run([uv(), "pip", "compile", str(wanted), "-c", str(everything), "-o", str(out), "--quiet",
                    "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_31",
                    *sum((["--no-emit-package", name] for name in colab_packages.NOT_ON_COLAB), [])], check=True)
    return out


def build(folder):
    """Create the stand-in's virtual environment in ``folder``; returns its python."""
    folder.mkdir(parents=True, exist_ok=True)
    pins = resolve(folder)
    venv = folder / "venv"
    subprocess.run([uv(), "venv", "--quiet", "--python", base_python(), str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([uv(), "pip", "install", "--quiet", "--no-deps", "--python", str(python), "-r", str(pins)],
                   check=True)
    site = pathlib.Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                       capture_output=True, text=True, check=True).stdout.strip())
    add_google_colab(site)
    return python


def installed(python):
    """``{package: version}`` of every distribution in the environment of ``python``."""
    code = ("import importlib.metadata as m, json, re; print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name'])"
            ".lower(): d.version for d in m.distributions()}))")
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout)


def kernelspec(python, folder, name="colab-standin"):
    """Write a Jupyter kernelspec for ``python`` under ``folder``/kernels; returns its name.

    Its kernel imports google.colab at start, as Colab's does, and finds the environment's scripts (``tensorboard``).
    """
    spec = folder / "kernels" / name
    spec.mkdir(parents=True, exist_ok=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}",
            "--IPKernelApp.exec_lines=import google.colab"]
    path = f"{pathlib.Path(python).parent}:{os.environ.get('PATH', '')}"  # its scripts on the PATH, as on Colab
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Colab stand-in",
                                                  "language": "python", "env": {"PATH": path}}))
    return name


def download_megabytes(log):
    """The megabytes of package files that a pip log shows fetched (downloaded or taken from pip's cache)."""
    sizes = re.findall(r"(?:Downloading|Using cached) \S+ \(([\d.]+) (kB|MB|GB)\)", log)
    scale = {"kB": 1e-3, "MB": 1.0, "GB": 1e3}
    return sum(float(size) * scale[unit] for size, unit in sizes)
