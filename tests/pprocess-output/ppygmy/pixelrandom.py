# The random numbers of the C twin (demos/ppygmy.c) in place of Python's
# random module: each pixel has its own splitmix64 generator, seeded from
# its position by seed_pixel(), so the image no longer depends on who
# renders which row.
MASK = (1 << 64) - 1
state = [0]

def seed_pixel(sy, sx):
    state[0] = ((sy << 32) | sx) ^ 0x5079676d79

def randrange(lo, hi):
    state[0] = (state[0] + 0x9e3779b97f4a7c15) & MASK
    z = state[0]
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & MASK
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & MASK
    z ^= z >> 31
    return lo + int(z % (hi - lo))
