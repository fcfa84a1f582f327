# mk/twins.mk - where tests/test_demos.c finds the recorded output of
# pprocess's original examples (tests/pprocess-output, recorded once by
# its record.sh). PPROCESS_OUTPUT in the environment overrides the place
# when the test runs. "private": the library objects this test depends on
# are not built with the definition.
$(BUILD)/tests/test_demos: private CPPFLAGS += \
	-DPPROCESS_OUTPUT='"$(CURDIR)/tests/pprocess-output"'
