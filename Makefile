# pose-runner: `make demo` runs the main job, `make test` the tests; both set up
# .venv first (scripts/setup.sh, idempotent: seconds when already done).
PY := .venv/bin/python
DATA ?= ../shared/data

.PHONY: setup demo test bench doctor lock

setup:
	@scripts/setup.sh

# Body pose on the COCO sample images: the official checkpoints when
# they can be downloaded (or are in download.mirror); offline, the trained
# RTMDet-nano person detector and BlazePose of ../shared/weights.
demo: setup
	@scripts/demo.sh $(DATA)/coco

test: setup
	$(PY) -m pytest -q --durations=25

# Not part of `make test`: timings belong here, never in tests. rtmlib, the peer,
# and rclone (its S3 server holds the object-storage benchmark's bucket) are
# installed pinned into .cache/bench-libs (pyproject's `bench` extra), outside the
# project's environment: neither is a dependency of the runner.
bench: setup
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --target .cache/bench-libs \
	  $$(sed -n 's/^bench = \[\(.*\)\]/\1/p' pyproject.toml | tr -d '",')
	$(PY) -m pytest benchmarks/test_micro.py -q --benchmark-enable --benchmark-columns=min,median,max
	$(PY) -m benchmarks.compare
	$(PY) -m benchmarks.peers
	$(PY) -m benchmarks.object_storage

doctor: setup
	$(PY) -m runner.doctor

# Re-freeze requirements.lock from the working .venv.
lock:
	@{ sed -n '1,/^[^#]/{/^#/p}' requirements.lock; \
	  $(PY) -m pip freeze --all --disable-pip-version-check | grep -vE '^(pip|pose-runner)==| @ |^-e |^# Editable' | LC_ALL=C sort -f; } > requirements.lock.new
	@mv requirements.lock.new requirements.lock
