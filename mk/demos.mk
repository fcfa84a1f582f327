# mk/demos.mk - the demo tour, and the demos' place in the tests.
#
#   make demo     build the library and every demo, then run a short tour
#                 (well under a minute): a pprocess twin, the Mandelbrot
#                 image and pprocess's PyGmy scene (their paths are
#                 printed at the end), the word count
#                 over the system's documentation, the indexer, its
#                 pprocess twin and the command runner.
#
# The tests of the demos (tests/test_demos.c) run the built programs from
# $(BUILD)/demos, so building that test builds the demos first.

# Where the tour writes the image: a PPM, the same computed serially (the
# two are compared), and a PNG that a browser opens.
DEMO_IMAGE = $(BUILD)/mandelbrot.ppm
DEMO_SERIAL = $(BUILD)/mandelbrot-serial.ppm
DEMO_PNG = $(BUILD)/mandelbrot.png
# The PyGmy scene, one PNG per way of rendering it (the five are compared).
DEMO_PYGMY = $(BUILD)/ppygmy
# The text the tour counts: the system's documentation (its gzip files are
# skipped as binary), or the project's own sources where there is none.
DEMO_TEXT ?= $(if $(wildcard /usr/share/doc/*/copyright),/usr/share/doc,.)
# How many of those files, in path order, so that the tour stays short.
DEMO_TEXT_FILES ?= 1500
# Where start_indexer indexes files/: the directory its recording was made
# in, so that it prints the paths the recording holds.
DEMO_INDEX_DIR = tests/pprocess-output/start_indexer

.PHONY: demo

$(BUILD)/tests/test_demos: $(DEMOS)

demo: $(DEMOS)
	@echo
	@echo "== simple_pmap: pprocess's simple_pmap.py, 100 tasks of 0.05 s on 10 processes"
	$(BUILD)/demos/simple_pmap --delay 0.05
	@echo
	@echo "== two_way: parent and child count down over one channel"
	$(BUILD)/demos/two_way --n 3
	@echo
	@echo "== mandelbrot: rows computed in parallel with exchange_pmap"
	$(BUILD)/demos/mandelbrot -o $(DEMO_IMAGE)
	$(BUILD)/demos/mandelbrot --serial -o $(DEMO_SERIAL)
	cmp $(DEMO_IMAGE) $(DEMO_SERIAL) && echo "the parallel and serial images are identical"
	$(BUILD)/demos/mandelbrot -o $(DEMO_PNG)
	@echo
	@echo "== ppygmy: pprocess's PyGmy ray tracer scene, rendered by rows four ways and serially"
	@for m in exchange pmap queue reuse serial; do \
	    echo "$(BUILD)/demos/ppygmy --$$m -o $(DEMO_PYGMY)-$$m.png 2"; \
	    $(BUILD)/demos/ppygmy --$$m -o $(DEMO_PYGMY)-$$m.png 2 || exit 1; \
	done
	@for m in exchange pmap queue reuse; do \
	    cmp $(DEMO_PYGMY)-$$m.png $(DEMO_PYGMY)-serial.png || exit 1; \
	done; echo "the five images are identical"
	@echo
	@echo "== wordcount: the top words of $(DEMO_TEXT_FILES) files of $(DEMO_TEXT), counted in worker processes"
	$(BUILD)/demos/wordcount --top 10 --max-files $(DEMO_TEXT_FILES) $(DEMO_TEXT)
	@echo
	@echo "== indexer: an index built with a window of 4 processes, then two queries"
	$(BUILD)/demos/indexer --window 4 --slice 5 demos "exchange pmap" "channel_start fill window" 2>&1
	@echo
	@echo "== start_indexer: pprocess's start_indexer.py, the words beginning with each pattern, and their files"
	cd $(DEMO_INDEX_DIR) && printf 'wor\nfox\n' | $(abspath $(BUILD))/demos/start_indexer files; echo
	@echo
	@echo "== prun: a shell command per input line, 4 at a time, output in input order"
	seq 1 8 | $(BUILD)/demos/prun -k -j 4 'echo {} squared is $$(expr {} "*" {})'
	@echo
	@echo "The Mandelbrot image is $(abspath $(DEMO_PNG))"
	@echo "(open it in a browser or any image viewer; the same picture as a"
	@echo " binary PPM is $(abspath $(DEMO_IMAGE)));"
	@echo "the PyGmy scene is $(abspath $(DEMO_PYGMY)-pmap.png)."
