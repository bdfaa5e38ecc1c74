"""Still images as a viewer shows them: EXIF orientation, 16-bit and float files, palettes."""

import numpy as np
import pytest
from PIL import Image

from jepa.data.image import ImageDecodeError, load_image


def _marked() -> np.ndarray:
    """32 x 64 RGB with a white square in the top-left corner."""
    rgb = np.full((32, 64, 3), 51, np.uint8)  # 51 and 255: web-palette levels, so "P" keeps them
    rgb[:8, :8] = 255
    return rgb


def _corner(img: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(img[..., 0] > 128)
    return int(ys.mean() > img.shape[0] / 2), int(xs.mean() > img.shape[1] / 2)


@pytest.mark.parametrize(
    "orientation, shape, corner",
    [(1, (32, 64), (0, 0)), (3, (32, 64), (1, 1)), (6, (64, 32), (0, 1)), (8, (64, 32), (1, 0))],
)
def test_exif_orientation_is_applied(tmp_path, orientation, shape, corner):
    """Phone photos are stored sideways with an EXIF orientation; 6 = turn 90 degrees clockwise."""
    img = Image.fromarray(_marked())
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(tmp_path / "photo.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(tmp_path / "photo.jpg")
    assert out.shape == (*shape, 3) and _corner(out) == corner
    assert load_image(tmp_path / "photo.jpg", target_short_side=16).shape[:2] == tuple(s // 2 for s in shape)


def test_16_bit_float_and_palette_images_keep_their_levels(tmp_path):
    ramp = np.linspace(0, 1, 32 * 64).reshape(32, 64)
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "depth16.png")
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "unit.tif")
    Image.fromarray(_marked()).convert("P").save(tmp_path / "palette.png")
    for name in ("depth16.png", "unit.tif"):
        out = load_image(tmp_path / name)
        assert out.shape == (32, 64, 3) and out.dtype == np.uint8
        np.testing.assert_allclose(out[..., 0], ramp * 255, atol=1.0, err_msg=name)  # not clipped to white / black
    np.testing.assert_array_equal(load_image(tmp_path / "palette.png"), _marked())
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ImageDecodeError, match="broken.png"):
        load_image(tmp_path / "broken.png")
