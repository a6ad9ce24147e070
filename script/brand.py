"""Draw the brand icon (custom_components/episode_sync/brand/icon.png and icon@2x.png).

Home Assistant 2026.3+ serves a custom integration's icon from its own brand/
folder (developers.home-assistant.io/blog/2026/02/24/brands-proxy-api):
256x256 and 512x512 PNGs with a transparent background. Run with the venv's
Python (Pillow ships with Home Assistant): .venv/bin/python script/brand.py
"""

from pathlib import Path

from PIL import Image, ImageDraw

BRAND = Path(__file__).resolve().parent.parent / "custom_components" / "episode_sync" / "brand"
BLUE = (3, 169, 244, 255)
WHITE = (255, 255, 255, 255)


def draw(size: int) -> Image.Image:
    """A television with a play mark and a sync arrow, on transparent ground."""
    scale = size / 256
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        return (round(x0 * scale), round(y0 * scale), round(x1 * scale), round(y1 * scale))

    def point(x: float, y: float) -> tuple[int, int]:
        return (round(x * scale), round(y * scale))

    # Screen and stand.
    pen.rounded_rectangle(box(16, 40, 240, 196), radius=round(24 * scale), fill=BLUE)
    pen.rounded_rectangle(box(32, 56, 224, 180), radius=round(12 * scale), fill=WHITE)
    pen.rectangle(box(112, 196, 144, 216), fill=BLUE)
    pen.rounded_rectangle(box(72, 212, 184, 228), radius=round(8 * scale), fill=BLUE)
    # Antennas.
    pen.line([point(96, 8), point(128, 40)], fill=BLUE, width=round(8 * scale))
    pen.line([point(160, 8), point(128, 40)], fill=BLUE, width=round(8 * scale))
    # A sync arrow around a play mark.
    pen.arc(box(78, 68, 178, 168), start=200, end=340, fill=BLUE, width=round(10 * scale))
    pen.arc(box(78, 68, 178, 168), start=20, end=160, fill=BLUE, width=round(10 * scale))
    pen.polygon([point(168, 86), point(190, 110), point(160, 116)], fill=BLUE)
    pen.polygon([point(88, 150), point(66, 126), point(96, 120)], fill=BLUE)
    pen.polygon([point(114, 96), point(150, 118), point(114, 140)], fill=BLUE)
    return image


if __name__ == "__main__":
    BRAND.mkdir(exist_ok=True)
    draw(256).save(BRAND / "icon.png", optimize=True)
    draw(512).save(BRAND / "icon@2x.png", optimize=True)
