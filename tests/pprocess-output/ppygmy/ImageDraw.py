# A stand-in for PIL's ImageDraw module, enough for PyGmy: point() stores
# a colour given as floats as PIL 1.1 does, each channel cut to an integer
# and clipped to 0..255.
def _clip(v):
    v = int(v)
    if v < 0:
        return 0
    if v > 255:
        return 255
    return v

class Draw:
    def __init__(self, image):
        self.image = image

    def point(self, xy, fill):
        x, y = xy
        k = (y * self.image.width + x) * 3
        self.image.pixels[k:k + 3] = bytearray([_clip(c) for c in fill])
