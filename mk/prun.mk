# mk/prun.mk - the command runner's tests, which compare demos/prun with
# GNU parallel on the same input.
#
#   make deps     also installs GNU parallel when it is missing
#
# tests/test_prun.c runs $(BUILD)/demos/prun, so building that test builds
# the demo first.

.PHONY: deps-prun

deps: deps-prun

deps-prun:
	@if command -v parallel >/dev/null 2>&1; then \
	    echo "GNU parallel is installed."; \
	else \
	    apt-get update && apt-get install -y parallel; \
	fi

$(BUILD)/tests/test_prun: $(BUILD)/demos/prun
