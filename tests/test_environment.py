"""The environment: the lock, the packaging fix, JupyterLab and the Colab local runtime, Binder, Codespaces.

The lock tests read files only. The others check the environment that runs them (make env's .venv),
so they fail when it was not built from the lock.
"""
import importlib.metadata
import json
import os
import pathlib
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers import config

ROOT = pathlib.Path(__file__).resolve().parent.parent
COLAB = "https://colab.research.google.com"
KERNEL = config.KERNEL_NAME


def locked(path):
    """``{name: (version, [hashes])}`` of a uv/pip-tools lock file; fails on any line that is not ``name==version``."""
    pins = {}
    text = (ROOT / path).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split(" --hash=")
        requirement = Requirement(spec.strip())
        versions = [s.version for s in requirement.specifier if s.operator == "=="]
        assert len(requirement.specifier) == 1 and versions, f"{path}: `{spec}` is not pinned with =="
        pins[canonicalize_name(requirement.name)] = (versions[0], [o.strip() for o in options])
    return pins


def bounds(path):
    """The requirements of a lock input such as requirements.in, with those of the files it includes (``-r``)."""
    requirements = []
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            requirements += bounds((ROOT / path).parent.relative_to(ROOT) / line[3:].strip())
        elif line:
            requirements.append(Requirement(line))
    return requirements


def test_lock_pins_every_package_with_a_hash():
    pins = locked("requirements.txt")
    assert len(pins) > 100  # transitive packages included, not just the ~30 bounds of requirements.in
    for name, (version, hashes) in pins.items():
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), f"{name}: no sha256 hash"
    assert "tensorflow-federated" not in pins  # installed --no-deps from requirements-tff.txt
    tff = locked("requirements-tff.txt")
    assert list(tff) == ["tensorflow-federated"] and tff["tensorflow-federated"][1]


def test_lock_satisfies_its_inputs():
    """Catches a requirements.in edited without running scripts/lock.sh."""
    for lock, source in [("requirements.txt", "requirements.in"), ("requirements-tff.txt", "requirements-tff.in"),
                         ("colab/requirements.txt", "colab/requirements.in")]:
        pins = locked(lock)
        for requirement in bounds(source):
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{source} names {name}, {lock} does not: run scripts/lock.sh"
            assert requirement.specifier.contains(pins[name][0], prereleases=True), (
                f"{lock} pins {name}=={pins[name][0]}, outside {source}'s `{requirement}`: run scripts/lock.sh")


def test_installed_packages_are_the_locked_ones():
    pins = {**locked("requirements.txt"), **locked("requirements-tff.txt")}
    wrong = {name: (importlib.metadata.version(name) if _installed(name) else None, version)
             for name, (version, _) in pins.items()
             if not _installed(name) or importlib.metadata.version(name) != version}
    assert not wrong, f"installed vs locked: {wrong}; rebuild the environment (make clean-env env)"


def _installed(name):
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def test_setup_check_reads_its_versions_from_the_lock_inputs():
    from helpers import setup
    pins = {**locked("requirements.txt"), **locked("requirements-tff.txt")}
    assert set(setup.EXPECTED) == {"tensorflow-federated", "tensorflow-model-optimization", "tensorflow"}
    for name, prefix in setup.EXPECTED.items():
        assert pins[name][0].startswith(prefix), (name, prefix, pins[name][0])
    assert setup.EXPECTED["tensorflow"].endswith(".")  # tensorflow==2.14.* means any 2.14.x
    with pytest.raises(RuntimeError, match="no line `tensorflow-privacy==<version>`"):
        setup._pinned_prefix("tensorflow-privacy", "requirements-tff.in")
    with pytest.raises(RuntimeError, match="is missing"):
        setup._pinned_prefix("tensorflow", "no-such-requirements.in")


def test_packaging_satisfies_tensorflow_privacy_and_jupyterlab_imports_with_it():
    """The packaging clash (README): tensorflow-privacy pins packaging~=22.0; JupyterLab >= 4.5.7 needs 23.2."""
    packaging_version = importlib.metadata.version("packaging")
    wanted = [Requirement(r) for r in importlib.metadata.requires("tensorflow-privacy")
              if canonicalize_name(Requirement(r).name) == "packaging"]
    assert wanted and all(r.specifier.contains(packaging_version) for r in wanted), (packaging_version, wanted)
    result = subprocess.run([sys.executable, "-c", "import jupyterlab.labapp, notebook.app, jupyter_server.serverapp"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_tensorflow_privacy_query_clips_and_averages():
    import numpy as np
    import tensorflow as tf
    import tensorflow_privacy as tfp_dp
    query = tfp_dp.NormalizedQuery(tfp_dp.GaussianSumQuery(l2_norm_clip=1.0, stddev=0.0), denominator=2.0)
    state = query.initial_global_state()
    params = query.derive_sample_params(state)
    sample = query.initial_sample_state(tf.zeros(2))
    for record in [tf.constant([3.0, 4.0]), tf.constant([0.3, 0.4])]:  # norms 5 (clipped to 1) and 0.5
        sample = query.accumulate_record(params, sample, record)
    result, _, _ = query.get_noised_result(sample, state)
    np.testing.assert_allclose(result.numpy(), [(0.6 + 0.3) / 2, (0.8 + 0.4) / 2], rtol=1e-6)


def test_tff_imports_quietly_and_tensorboard_finds_pkg_resources():
    """setuptools 81 removed pkg_resources (TensorBoard's server needs it); 80 warns on stderr when TFF imports it."""
    code = "import tensorflow_federated, tensorboard.default; print(type(tensorboard.default.get_plugins()[0]).__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "CorePluginLoader"
    assert "Warning" not in result.stderr, result.stderr[-2000:]


def test_kernelspec_is_installed_in_the_environment():
    from jupyter_client.kernelspec import KernelSpecManager
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    assert spec.display_name == config.KERNEL_DISPLAY_NAME == "FL compression course (Python 3.11)"
    assert pathlib.Path(spec.resource_dir).is_relative_to(sys.prefix)  # --sys-prefix, not the user's folder
    assert pathlib.Path(spec.argv[0]).resolve() == pathlib.Path(sys.executable).resolve()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, token, origin=None):
    headers = {"Authorization": f"token {token}"}
    if origin:
        headers["Origin"] = origin
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _serve(command, port, token, tmp_path, wait_for="/api/status", timeout=60):
    """Starts a Jupyter server command, waits until it answers, returns the process.

    The command runs as written; the token comes from JUPYTER_TOKEN, and a user config folder of its own
    allows root (CI runs as root, where Jupyter refuses to start without it).
    """
    (tmp_path / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"allow_root": True}}))
    env = {**os.environ, "JUPYTER_TOKEN": token, "BROWSER": "true", "JUPYTER_CONFIG_DIR": str(tmp_path)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"`{shlex.join(command)}` exited with {process.returncode}:\n"
                                 + process.stdout.read()[-3000:])
        try:
            if _get(f"http://127.0.0.1:{port}{wait_for}", token)[0] == 200:
                return process
        except OSError:
            pass
        time.sleep(0.3)
    _stop(process)
    raise AssertionError(f"`{shlex.join(command)}` did not answer on port {port} within {timeout} s")


def _stop(process, port=None, token=None):
    """Shuts the server down through its REST API (or SIGTERM), returns its exit code and output."""
    if port is not None:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {token}"})
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except OSError:
            pass
    try:
        output, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    return process.returncode, output


def readme_colab_command():
    """The Jupyter command of the Colab section of docs/hosted.md, as a list of arguments."""
    section = (ROOT / "docs" / "hosted.md").read_text().split("\n## Colab", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert blocks, "the Colab section of docs/hosted.md has no ```bash block"
    lines = [line for line in blocks[0].replace("\\\n", " ").splitlines() if "jupyter" in line]
    assert len(lines) == 1, f"expected one jupyter command in the Colab section of docs/hosted.md, got {lines}"
    return shlex.split(lines[0].split("&&")[-1])


def test_readme_colab_local_runtime_command_serves_colab(tmp_path):
    command = readme_colab_command()
    assert command[0] == ".venv/bin/jupyter" and "--port=8888" in command, command
    if not (ROOT / ".venv/bin/jupyter").exists():
        pytest.fail(f"{ROOT}/.venv/bin/jupyter is missing: run `make env` first")
    port, token = _free_port(), "colab-test-token"
    command = [str(ROOT / command[0])] + [f"--port={port}" if a == "--port=8888" else a for a in command[1:]]
    process = _serve(command, port, token, tmp_path)
    try:
        status, headers, body = _get(f"http://127.0.0.1:{port}/api/kernelspecs", token, origin=COLAB)
        assert status == 200, body[:500]
        assert headers.get("Access-Control-Allow-Origin") == COLAB
        assert KERNEL in json.loads(body)["kernelspecs"]
        _, headers, _ = _get(f"http://127.0.0.1:{port}/api/kernelspecs", token, origin="https://example.org")
        assert headers.get("Access-Control-Allow-Origin") == COLAB  # not "*": another site may not read answers
        preflight = urllib.request.Request(f"http://127.0.0.1:{port}/api/kernels", method="OPTIONS", headers={
            "Origin": COLAB, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        with urllib.request.urlopen(preflight, timeout=5) as response:  # what the browser asks before Colab's POST
            assert response.status in (200, 204)
            assert response.headers["Access-Control-Allow-Origin"] == COLAB
    finally:
        code, output = _stop(process, port, token)
    assert code == 0, output[-3000:]


def test_jupyterlab_starts_and_serves_lab(tmp_path):
    """What `make lab` runs (Makefile), on a free port without a browser."""
    port, token = _free_port(), "lab-test-token"
    jupyter = pathlib.Path(sys.executable).parent / "jupyter"
    process = _serve([str(jupyter), "lab", "notebooks/", "--no-browser", f"--port={port}",
                      "--ServerApp.port_retries=0"], port, token, tmp_path)
    try:
        status, _, body = _get(f"http://127.0.0.1:{port}/lab", token)
        assert status == 200 and b"JupyterLab" in body
        status, _, body = _get(f"http://127.0.0.1:{port}/api/contents", token)
        assert status == 200 and any(item["name"].startswith("01_") for item in json.loads(body)["content"])
    finally:
        code, output = _stop(process, port, token)
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def test_binder_folder_is_self_contained():
    binder = ROOT / "binder"
    assert (binder / "runtime.txt").read_text().strip() == "python-3.11"
    assert not (binder / "environment.yml").exists()  # it would take precedence over runtime.txt and requirements
    included = [line.split()[1] for line in (binder / "requirements.txt").read_text().splitlines()
                if line.startswith("-r ")]
    assert included == ["../requirements.txt"] and (binder / included[0]).resolve() == ROOT / "requirements.txt"
    post_build = binder / "postBuild"
    assert post_build.stat().st_mode & stat.S_IXUSR, "binder/postBuild must be executable"
    text = post_build.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    for step in ["--no-deps -r requirements-tff.txt", "--no-deps -e .", 'python -c "$INSTALL_KERNEL" --sys-prefix',
                 "config.KERNEL_NAME", "config.KERNEL_DISPLAY_NAME"]:
        assert step in text, step
    env = {k: v for k, v in os.environ.items() if k != "COURSE_FAST"}
    start = [str(binder / "start"), sys.executable, "-c", "import os; print(os.environ['COURSE_FAST'])"]
    assert subprocess.run(start, env=env, capture_output=True, text=True).stdout == "1\n"  # smoke size on Binder
    assert subprocess.run(start, env={**env, "COURSE_FAST": "0"}, capture_output=True, text=True).stdout == "0\n"


def test_devcontainer_is_json_on_a_python_311_image():
    config = json.loads((ROOT / ".devcontainer/devcontainer.json").read_text())  # plain JSON, no comments
    assert re.fullmatch(r"mcr\.microsoft\.com/devcontainers/python:(\d+-)?3\.11(-\w+)?", config["image"])
    assert config["postCreateCommand"] == "make env" and config["waitFor"] == "postCreateCommand"
    vscode = config["customizations"]["vscode"]
    assert {"ms-toolsai.jupyter", "ms-python.python"} <= set(vscode["extensions"])
    assert vscode["settings"]["python.defaultInterpreterPath"] == ".venv/bin/python"


def test_environment_yml_uses_the_lock_and_documents_the_no_deps_step():
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*- python=3\.11\s*$", text, re.M)
    assert re.search(r"^\s*- -r requirements\.txt\s*$", text, re.M)
    assert "pip install --no-deps -r requirements-tff.txt" in text and f"--name {KERNEL}" in text
