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

# The command's man page renders without a warning and names the version
# being built (make man-check; the library's pages are checked in
# mk/install.mk).
.PHONY: man-check-prun

man-check: man-check-prun

man-check-prun:
	@echo "man-check: man/prun.1"
	@grep -q '^\.TH .* "exchange $(VERSION)"' man/prun.1 || { \
	    echo "man/prun.1: its .TH line does not name exchange $(VERSION)"; \
	    exit 1; }
	@out=$$(groff -man -ww -z man/prun.1 2>&1); \
	if [ -n "$$out" ]; then echo "$$out"; exit 1; fi; \
	out=$$(MANWIDTH=80 man --warnings -l man/prun.1 2>&1 >/dev/null); \
	if [ -n "$$out" ]; then echo "$$out"; exit 1; fi
