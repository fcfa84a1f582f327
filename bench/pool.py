"""The Python side of the trivial map: multiprocessing.Pool(2).map over
range(n) with its default chunk size, timed from creating the pool to
closing it (what a user of Pool pays), printed as one trial line."""
import multiprocessing
import sys
import time


def square(x):
    return x * x


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    t0 = time.monotonic()
    with multiprocessing.Pool(2) as pool:
        out = pool.map(square, range(n))
    t = time.monotonic() - t0
    if len(out) != n or out[-1] != (n - 1) * (n - 1):
        print("na wrong result")
    else:
        print("ok %.9g" % (n / t))


if __name__ == "__main__":
    main()
