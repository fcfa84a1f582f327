#!/bin/sh
# record.sh - records the output of pprocess's original examples, which
# tests/test_demos.c compares with the output of their C twins.
#
#   sh tests/pprocess-output/record.sh PPROCESS_DIR
#
# PPROCESS_DIR holds pprocess 0.5 (pprocess.py, examples/, tests/). Python
# 2.7 runs it (pyenv's 2.7.18), with PYTHONUNBUFFERED unset. Each
# example is run from a copy in a temporary directory, where the only edit
# is the delay: "delay = 1" becomes "delay = 0.01" (the twins are then
# run with --delay 0.01). The files are written next to this script.
set -eu

pp=$(cd "${1:?usage: record.sh PPROCESS_DIR}" && pwd)
out=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset PYTHONUNBUFFERED
PYENV_VERSION=2.7.18
export PYENV_VERSION
cd "$work"
cp "$pp/pprocess.py" "$pp"/tests/*.py .
for f in "$pp"/examples/*.py "$pp"/examples/concurrency-sig/*.py; do
	sed 's/^delay = 1$/delay = 0.01/' "$f" > "${f##*/}"
done

# The examples whose children print nothing: through a pipe.
for name in simple simple1 simple2 simple_map simple_start \
    simple_start_queue simple_create simple_create_map simple_create_queue \
    simple_managed simple_managed_map simple_managed_map_reusable \
    simple_managed_queue simple_pmap simple_pmap_iter \
    simple_continuous_queue; do
	python2 "$name.py" > "$out/$name.txt"
done

# The persistent examples, started and then reconnected to (run in one go,
# two of them fail at once: the first connect comes before the background
# process listens). Their background processes' own lines go nowhere
# (pprocess closes their standard streams).
for name in simple_background_queue simple_persistent_queue \
    simple_persistent_managed; do
	python2 "$name.py" --start > "$out/$name.txt"
	sleep 1
	python2 "$name.py" --reconnect >> "$out/$name.txt"
done

# The conversations, whose children print too: on a terminal (script(1)),
# where every line reaches the screen. Through a pipe pprocess loses the
# lines of a child that leaves with os._exit (its buffer is never
# flushed), and the order of the rest depends on which process exits
# first; the C twins flush their children's output, so they print through
# a pipe what pprocess prints on a terminal.
for name in two_way create_loop start_loop; do
	script -qec "python2 $name.py" /dev/null | tr -d '\r' > "$out/$name.txt"
done

# The indexer, tests/start_indexer.py with tests/Dict.py: the files of
# start_indexer/files (not those of its subdirectory) with a window of 4
# processes, slices of 5 files and a delay of 0.01 s, answering the lines
# of start_indexer/patterns. Run from start_indexer/, so that the paths it
# prints start with files/. At the end of its input it prints a last
# "Pattern: ", then stops with an EOFError (status 1), as it always does.
(cd "$out/start_indexer" && python2 "$work/start_indexer.py" files 4 5 0.01 \
    < patterns > "$out/start_indexer.txt" 2> "$work/start_indexer.err") ||
	tail -n 1 "$work/start_indexer.err" |
	grep -qx 'EOFError: EOF when reading a line'

# PyGmy: scene.py at 60 x 40 with ppygmy.py, the stand-ins for PIL's Image
# and ImageDraw of ppygmy/, and the C twin's random numbers (one
# generator per pixel, ppygmy/pixelrandom.py) in place of the random
# module. The PPM is the image the C twin must draw at that size.
cp "$out"/ppygmy/*.py .
cp "$pp"/examples/PyGmy/ppygmy.py "$pp"/examples/PyGmy/scene.py .
sed -i -e 's/^import Image, ImageDraw, random, copy$/import Image, ImageDraw, copy\nimport pixelrandom as random/' \
    -e 's/^\(        for sx in range(0,self.width):\)$/\1\n            random.seed_pixel(sy, sx)/' ppygmy.py
sed -i -e 's/w = world(300,200)/w = world(60,40)/' \
    -e 's/"test.tif"/"ppygmy-60x40.ppm"/' scene.py
python2 scene.py 3 > /dev/null
cp ppygmy-60x40.ppm "$out/ppygmy/"
