"""The Colab install's rules, checked without Colab: what the Colab lock may change, when the setup cell restarts.

The Colab route itself runs on a stand-in for Colab's runtime in tests/colab/ (`make test-colab`).
"""
import pathlib

import pytest

from helpers import colab

ROOT = pathlib.Path(__file__).resolve().parent.parent
from scripts import colab_packages  # noqa: E402


def test_colab_lock_keeps_colabs_kernel_stack_and_replaces_only_what_it_names():
    ours, theirs, replaced = colab_packages.locked(), colab_packages.colab_versions(), colab_packages.replaced()
    for name in colab.KERNEL_STACK:
        assert theirs[name] and name not in replaced, name
        assert ours.get(name, theirs[name]) == theirs[name], f"the Colab lock moves Colab's {name}"
    moved = {name for name in ours if name in theirs and ours[name] != theirs[name]}
    assert moved <= replaced, (f"the Colab lock moves {sorted(moved - replaced)}, which colab/requirements.in does "
                               "not mark replace:")
    assert {"tensorflow", "numpy", "protobuf"} <= moved and ours["tensorflow"].startswith("2.14.")
    assert "jedi" not in ours  # Colab's IPython runs without it


def test_install_goes_straight_on_when_the_stamp_is_current(tmp_path, monkeypatch):
    for name in colab.LOCKS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / colab.STAMP).write_text(colab.fingerprint(tmp_path))
    monkeypatch.setattr(colab, "pip", lambda *args: pytest.fail("installed again"))
    colab.install(tmp_path)
    (tmp_path / "colab" / "requirements.txt").write_text("changed\n")  # a new lock: install again
    assert not colab.is_installed(tmp_path)


def test_restart_only_for_replaced_packages_already_imported():
    import numpy  # noqa: F401
    assert colab.imported(["numpy", "scipy-not-a-package"]) == ["numpy"]
    assert colab.changed({"numpy": "2.0.2", "six": "1.17.0"}, {"numpy": "1.25.2", "six": "1.17.0"}) == {
        "numpy": ("2.0.2", "1.25.2")}
    with pytest.raises(colab.SetupError) as stopped:
        colab.restart(["numpy"])  # outside a kernel nothing restarts, but the cell still stops with the reason
    assert stopped.value._render_traceback_() == [str(stopped.value)]
    assert "numpy was imported before the install" in str(stopped.value)


def test_a_lock_that_would_move_colabs_kernel_stack_installs_nothing(tmp_path, monkeypatch):
    (tmp_path / "colab").mkdir()
    lock = (ROOT / "colab" / "requirements.txt").read_text().replace("ipykernel==6.17.1", "ipykernel==6.31.0")
    (tmp_path / "colab" / "requirements.txt").write_text(lock)
    monkeypatch.setattr(colab, "versions", lambda names: {name: colab_packages.colab_versions().get(name)
                                                          for name in names})  # this runtime is Colab's
    monkeypatch.setattr(colab, "is_installed", lambda course: False)
    monkeypatch.setattr(colab, "pip", lambda *args: pytest.fail("pip ran"))
    with pytest.raises(colab.SetupError, match=r"would change Colab's kernel packages \{'ipykernel': \('6.17.1', "
                                               r"'6.31.0'\)\}.*nothing was installed"):
        colab.install(tmp_path)
    assert colab.kernel_stack_moves({"tornado": "6.4.2"}, {"tornado": "6.4.2", "numpy": "1.25.2"}) == {}
