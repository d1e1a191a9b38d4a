"""Draws the application icon (packaging/skin-capture.png, 256 px) with Pillow; run once."""

from pathlib import Path

from PIL import Image, ImageDraw


def draw_icon(size: int = 256) -> Image.Image:
    scale = 4  # draw large, then downsample for smooth edges
    s = size * scale
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((0, 0, s - 1, s - 1), radius=s // 5, fill=(18, 110, 130, 255))
    c, r = s // 2, int(s * 0.32)
    d.ellipse((c - r, c - r, c + r, c + r), fill=(231, 190, 165, 255))  # skin disc
    lr = int(s * 0.11)
    d.ellipse((c - lr - s // 20, c - lr, c + lr - s // 20, c + lr), fill=(110, 62, 45, 255))
    w = s // 18
    d.line(
        [
            (int(s * 0.55), int(s * 0.72)),
            (int(s * 0.66), int(s * 0.83)),
            (int(s * 0.86), int(s * 0.58)),
        ],
        fill=(255, 255, 255, 255),
        width=w,
        joint="curve",
    )
    return img.resize((size, size), Image.LANCZOS)


if __name__ == "__main__":
    out = Path(__file__).with_name("skin-capture.png")
    draw_icon().save(out)
    draw_icon().save(out.with_suffix(".ico"), sizes=[(16, 16), (32, 32), (48, 48), (256, 256)])
