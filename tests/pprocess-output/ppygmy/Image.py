# A stand-in for PIL's Image module, enough for PyGmy: an RGB image kept
# as bytes and saved as a binary PPM, whatever the file name says.
class _Image:
    def __init__(self, size):
        self.width, self.height = size
        self.pixels = bytearray(self.width * self.height * 3)

    def save(self, filename):
        f = open(filename, "wb")
        f.write("P6\n%d %d\n255\n" % (self.width, self.height))
        f.write(self.pixels)
        f.close()

def new(mode, size):
    return _Image(size)
