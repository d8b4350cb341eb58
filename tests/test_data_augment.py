# test_data_augment.py — runtime/data's decoders and transforms against
# PIL / torchvision 0.14 (PIL backend) with explicit random parameters, and
# RandomResizedCrop's sampling distribution against torchvision's get_params.
import math
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

import torchvision.transforms as T
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

from conftest import build_path, run_tool  # noqa: F401 (data_tool is a fixture there)

TOL = 2  # in 8-bit steps: max abs diff <= 2/255 after ToTensor


def natural_image(h, w, seed, gray=False):
    """Smooth colour fields + edges + a little noise, like a photo."""
    rng = np.random.default_rng(seed)
    c = 1 if gray else 3
    low = rng.uniform(0, 255, size=(max(2, h // 24), max(2, w // 24), c)).astype(np.float32)
    img = np.array(Image.fromarray(low.astype(np.uint8).squeeze() if gray else low.astype(np.uint8))
                   .resize((w, h), Image.BICUBIC), dtype=np.float32)
    if gray:
        img = img[..., None]
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(4):
        a, b, t = rng.normal(size=3)
        mask = (a * (yy - h / 2) + b * (xx - w / 2) + t * 20) > 0
        img[mask] = img[mask] * 0.6 + rng.uniform(0, 255, size=c) * 0.4
    img += rng.normal(0, 6, size=img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img[..., 0] if gray else img


SIZES = [(375, 500), (333, 251), (64, 97)]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("aug_images")
    out = {}
    for k, (h, w) in enumerate(SIZES):
        arr = natural_image(h, w, k)
        Image.fromarray(arr).save(d / f"rgb{k}.png")
        Image.fromarray(arr).save(d / f"rgb{k}.jpg", quality=90)
        np.save(d / f"rgb{k}.npy", arr)
        out[f"rgb{k}"] = d / f"rgb{k}"
    g = natural_image(121, 163, 9, gray=True)
    Image.fromarray(g, "L").save(d / "gray.png")
    Image.fromarray(g, "L").save(d / "gray.jpg", quality=85)
    np.save(d / "gray.npy", g)
    out["gray"] = d / "gray"
    return out


def tool_apply(tool, tmp_path, src, ops):
    dst = tmp_path / "out.npy"
    run_tool(tool, "apply", src, dst, *ops)
    return np.load(dst)


def maxdiff(a, b):
    a = np.asarray(a).astype(np.int64)
    b = np.asarray(b).astype(np.int64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a - b).max())


def pil_hwc(img):
    a = np.array(img)
    return a[..., None] if a.ndim == 2 else a


# ---------------------------------------------------------------- decoding

@pytest.mark.parametrize("name", ["rgb0", "rgb1", "rgb2", "gray"])
@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_decode_matches_pil(data_tool, images, tmp_path, name, ext):
    src = f"{images[name]}.{ext}"
    run_tool(data_tool, "decode", src, tmp_path / "d.npy", "--channels", "3")
    ours = np.load(tmp_path / "d.npy")
    ref = np.array(Image.open(src).convert("RGB"))
    assert maxdiff(ours, ref) <= (0 if ext == "png" else 1)
    run_tool(data_tool, "decode", src, tmp_path / "g.npy", "--channels", "1")
    ref_l = np.array(Image.open(src).convert("L"))[..., None]
    assert maxdiff(np.load(tmp_path / "g.npy"), ref_l) <= (0 if ext == "png" else 1)


@pytest.mark.parametrize("denom", [2, 4, 8])
def test_decode_scaled_jpeg_matches_pil_draft(data_tool, images, tmp_path, denom):
    src = f"{images['rgb0']}.jpg"
    run_tool(data_tool, "decode", src, tmp_path / "d.npy", "--channels", "3", "--scale", denom)
    ours = np.load(tmp_path / "d.npy")
    im = Image.open(src)
    im.draft("RGB", (500 // denom, 375 // denom))  # PIL picks scale = min(500 // rw, 375 // rh)
    ref = np.array(im.convert("RGB"))
    assert ours.shape == (math.ceil(375 / denom), math.ceil(500 / denom), 3)
    assert maxdiff(ours, ref) <= 1


def test_decode_png_variants(data_tool, tmp_path):
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, size=(17, 23, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pal = Image.fromarray(rgba[..., :3]).convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    palt = pal.copy()
    palt.info["transparency"] = 3
    palt.save(tmp_path / "pt.png", transparency=3)
    bw = Image.fromarray(rgba[..., 0] > 128)
    bw.save(tmp_path / "bw.png")
    for f in ["a.png", "p.png", "pt.png", "bw.png"]:
        run_tool(data_tool, "decode", tmp_path / f, tmp_path / "d.npy", "--channels", "3")
        ref = np.array(Image.open(tmp_path / f).convert("RGB"))
        assert maxdiff(np.load(tmp_path / "d.npy"), ref) == 0, f
    # 16-bit RGB: PIL keeps the high byte, so do we
    import zlib, struct
    data16 = rng.integers(0, 65536, size=(9, 11, 3), dtype=np.uint16)
    raw = b"".join(b"\x00" + data16[y].astype(">u2").tobytes() for y in range(9))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 11, 9, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    (tmp_path / "c16.png").write_bytes(png)
    run_tool(data_tool, "decode", tmp_path / "c16.png", tmp_path / "d.npy", "--channels", "3")
    assert maxdiff(np.load(tmp_path / "d.npy"), (data16 >> 8).astype(np.uint8)) == 0
    assert maxdiff(np.load(tmp_path / "d.npy"), np.array(Image.open(tmp_path / "c16.png").convert("RGB"))) == 0


def test_decode_cmyk_jpeg(data_tool, tmp_path):
    cmyk = np.random.default_rng(2).integers(0, 256, size=(21, 34, 4), dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", quality=95)  # Adobe, inverted
    run_tool(data_tool, "decode", tmp_path / "c.jpg", tmp_path / "d.npy", "--channels", "3")
    ref = np.array(Image.open(tmp_path / "c.jpg").convert("RGB"))
    assert maxdiff(np.load(tmp_path / "d.npy"), ref) == 0


def test_decode_bad_files_name_the_path(data_tool, images, tmp_path):
    good = open(f"{images['rgb0']}.jpg", "rb").read()
    cases = {"trunc.jpg": good[: len(good) // 3], "garbage.png": bytes(range(256)) * 3,
             "empty.jpg": b"", "header_only.png": b"\x89PNG\r\n\x1a\n"}
    import zlib, struct

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    # a header promising 8000x8000 pixels in a 74-byte file: refused before allocating
    cases["liar.png"] = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8000, 8000, 8, 2, 0, 0, 0))
                         + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        p = run_tool(data_tool, "decode", tmp_path / name, tmp_path / "x.npy", check=False)
        assert p.returncode == 1, name
        assert name in p.stderr and "Segmentation" not in p.stderr
        if name == "liar.png":
            assert "cannot fit" in p.stderr


# ---------------------------------------------------------------- transforms

CROPS = [  # (i, j, h, w, out_h, out_w)
    (10, 20, 300, 400, 224, 224),   # downscale
    (0, 0, 375, 500, 224, 224),     # whole image
    (100, 57, 61, 43, 224, 224),    # upscale
    (5, 7, 200, 100, 96, 160),      # mixed
    (31, 3, 224, 224, 224, 224),    # crop only
    (1, 2, 40, 90, 23, 17),         # odd sizes
]


@pytest.mark.parametrize("crop", CROPS)
def test_resized_crop(data_tool, images, tmp_path, crop):
    i, j, h, w, oh, ow = crop
    arr = np.load(f"{images['rgb0']}.npy")
    ours = tool_apply(data_tool, tmp_path, f"{images['rgb0']}.npy", [f"crop={i},{j},{h},{w},{oh},{ow}"])
    ref = F.resized_crop(Image.fromarray(arr), i, j, h, w, [oh, ow], InterpolationMode.BILINEAR)
    assert maxdiff(ours, pil_hwc(ref)) <= TOL


@pytest.mark.parametrize("box,size", [((15.5, 0.0, 109.25, 93.75), (48, 48)), ((0, 0, 125, 94), (60, 80)),
                                      ((3.3, 7.9, 40.1, 20.2), (224, 224))])
def test_resize_float_box(data_tool, images, tmp_path, box, size):
    arr = np.load(f"{images['rgb0']}.npy")[:94, :125]
    np.save(tmp_path / "in.npy", np.ascontiguousarray(arr))
    ours = tool_apply(data_tool, tmp_path, tmp_path / "in.npy",
                      ["resize_box=" + ",".join(map(str, box)) + f",{size[0]},{size[1]}"])
    ref = Image.fromarray(arr).resize((size[1], size[0]), Image.BILINEAR, box=box)
    assert maxdiff(ours, pil_hwc(ref)) == 0


def test_resized_crop_gray(data_tool, images, tmp_path):
    arr = np.load(f"{images['gray']}.npy")
    ours = tool_apply(data_tool, tmp_path, f"{images['gray']}.npy", ["crop=3,5,100,150,64,64"])
    ref = F.resized_crop(Image.fromarray(arr, "L"), 3, 5, 100, 150, [64, 64], InterpolationMode.BILINEAR)
    assert maxdiff(ours, pil_hwc(ref)) <= TOL


PIXEL_OPS = [
    ("flip", F.hflip),
    ("brightness=0.63", lambda im: F.adjust_brightness(im, 0.63)),
    ("brightness=1.37", lambda im: F.adjust_brightness(im, 1.37)),
    ("contrast=0.61", lambda im: F.adjust_contrast(im, 0.61)),
    ("contrast=1.8", lambda im: F.adjust_contrast(im, 1.8)),
    ("saturation=0.2", lambda im: F.adjust_saturation(im, 0.2)),
    ("saturation=1.55", lambda im: F.adjust_saturation(im, 1.55)),
    ("hue=0.07", lambda im: F.adjust_hue(im, 0.07)),
    ("hue=-0.1", lambda im: F.adjust_hue(im, -0.1)),
    ("hue=0.45", lambda im: F.adjust_hue(im, 0.45)),
    ("hue=-0.5", lambda im: F.adjust_hue(im, -0.5)),
    ("gray", lambda im: F.rgb_to_grayscale(im, num_output_channels=len(im.getbands()))),
    ("blur=23,1.7", lambda im: F.gaussian_blur(im, [23, 23], [1.7, 1.7])),
    ("blur=23,0.1", lambda im: F.gaussian_blur(im, [23, 23], [0.1, 0.1])),
    ("blur=5,2.0", lambda im: F.gaussian_blur(im, [5, 5], [2.0, 2.0])),
    ("solarize=128", lambda im: F.solarize(im, 128)),
]


@pytest.mark.parametrize("name", ["rgb1", "rgb2", "gray"])
@pytest.mark.parametrize("op,ref_fn", PIXEL_OPS, ids=[o for o, _ in PIXEL_OPS])
def test_pixel_op(data_tool, images, tmp_path, name, op, ref_fn):
    arr = np.load(f"{images[name]}.npy")
    ours = tool_apply(data_tool, tmp_path, f"{images[name]}.npy", [op])
    ref = pil_hwc(ref_fn(Image.fromarray(arr)))
    assert maxdiff(ours, ref) <= TOL


def test_pixel_ops_mostly_exact(data_tool, images, tmp_path):
    """The integer PIL ops are reproduced bit for bit, not just within 2/255."""
    arr = np.load(f"{images['rgb1']}.npy")
    for op, ref_fn in PIXEL_OPS:
        if op.startswith("blur"):
            continue
        ours = tool_apply(data_tool, tmp_path, f"{images['rgb1']}.npy", [op])
        assert maxdiff(ours, pil_hwc(ref_fn(Image.fromarray(arr)))) == 0, op


def test_to_tensor_normalize(data_tool, images, tmp_path):
    arr = np.load(f"{images['rgb2']}.npy")
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ours = tool_apply(data_tool, tmp_path, f"{images['rgb2']}.npy",
                      ["tensor=" + ",".join(map(str, mean + std))])
    ref = F.normalize(F.to_tensor(Image.fromarray(arr)), mean, std).numpy()
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-5


@pytest.mark.parametrize("seed", range(6))
def test_full_view_chain(data_tool, images, tmp_path, seed):
    """A whole view with explicit parameters drawn here: crop, the four
    jitters in a random order, grayscale, blur, flip, solarize, normalise."""
    rng = np.random.default_rng(100 + seed)
    name = ["rgb0", "rgb1", "gray"][seed % 3]
    arr = np.load(f"{images[name]}.npy")
    H, W = arr.shape[:2]
    img = Image.fromarray(arr)
    i, j, h, w = T.RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3))
    ops = [f"crop={i},{j},{h},{w},224,224"]
    ref = F.resized_crop(img, i, j, h, w, [224, 224], InterpolationMode.BILINEAR)
    fns = {0: ("brightness", F.adjust_brightness, rng.uniform(0.6, 1.4)),
           1: ("contrast", F.adjust_contrast, rng.uniform(0.6, 1.4)),
           2: ("saturation", F.adjust_saturation, rng.uniform(0.6, 1.4)),
           3: ("hue", F.adjust_hue, rng.uniform(-0.1, 0.1))}
    for k in rng.permutation(4):
        nm, fn, f = fns[k]
        ops.append(f"{nm}={f!r}")
        ref = fn(ref, f)
    if seed % 2:
        ops.append("gray")
        ref = F.rgb_to_grayscale(ref, num_output_channels=len(ref.getbands()))
    sigma = float(rng.uniform(0.1, 2.0))
    ops.append(f"blur=23,{sigma!r}")
    ref = F.gaussian_blur(ref, [23, 23], [sigma, sigma])
    ops.append("flip")
    ref = F.hflip(ref)
    if seed % 3 == 1:
        ops.append("solarize=128")
        ref = F.solarize(ref, 128)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ops.append("tensor=" + ",".join(map(str, mean + std)))
    ours = tool_apply(data_tool, tmp_path, f"{images[name]}.npy", ops)
    c = len(ref.getbands())
    ref_t = F.normalize(F.to_tensor(ref), mean[:c], std[:c]).numpy()
    # a 2/255 step in [0, 1] becomes 2/255/std after Normalize
    assert np.abs(ours - ref_t).max() <= 2 / 255 / min(std) + 1e-5


# ---------------------------------------------------------------- sampling

def ks_2samp(a, b):
    """Two-sample Kolmogorov-Smirnov statistic."""
    a, b = np.sort(a), np.sort(b)
    allv = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, allv, side="right") / len(a)
    cdf_b = np.searchsorted(b, allv, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def crop_stats(boxes, H, W):
    i, j, h, w = [boxes[:, k].astype(np.float64) for k in range(4)]
    return {"scale": h * w / (H * W), "log_ratio": np.log(w / h),
            "i_rel": (i + 0.5) / (H - h + 1), "j_rel": (j + 0.5) / (W - w + 1)}


@pytest.mark.parametrize("H,W,scale", [(375, 500, (0.08, 1.0)), (224, 224, (0.2, 1.0)), (64, 300, (0.08, 1.0))])
def test_crop_distribution_matches_torchvision(data_tool, H, W, scale):
    n = 20000
    ratio = (3 / 4, 4 / 3)
    out = run_tool(data_tool, "crop-params", H, W, n, 1234, scale[0], scale[1], ratio[0], ratio[1]).stdout
    ours = np.array([list(map(int, line.split())) for line in out.split("\n") if line], dtype=np.int64)
    assert ours.shape == (n, 4)
    torch.manual_seed(0)
    dummy = torch.empty(3, H, W)
    ref = np.array([T.RandomResizedCrop.get_params(dummy, list(scale), list(ratio)) for _ in range(n)])
    # alpha = 0.001: critical D = 1.95 * sqrt(2 / n) ~= 0.0195; a wrong scale
    # range or an unlogged ratio gives D > 0.05 (checked below)
    crit = 1.95 * math.sqrt(2 / n)
    so, sr = crop_stats(ours, H, W), crop_stats(ref, H, W)
    for key in so:
        d = ks_2samp(so[key], sr[key])
        assert d < crit, (key, d, crit)
    # the test has power: a different scale range is detected
    out2 = run_tool(data_tool, "crop-params", H, W, n, 99, scale[0] + 0.1, scale[1], ratio[0], ratio[1]).stdout
    wrong = np.array([list(map(int, line.split())) for line in out2.split("\n") if line])
    assert ks_2samp(crop_stats(wrong, H, W)["scale"], sr["scale"]) > 2 * crit


def test_crop_fallback_equals_torchvision(data_tool):
    for H, W in [(10, 1000), (1000, 12)]:
        out = run_tool(data_tool, "crop-params", H, W, 3, 1, 0.08, 1.0, 0.75, 4 / 3).stdout.split("\n")[0]
        ours = tuple(map(int, out.split()))
        ref = T.RandomResizedCrop.get_params(torch.empty(3, H, W), [0.08, 1.0], [3 / 4, 4 / 3])
        assert ours == tuple(ref)


# ---------------------------------------------------------------- presets

# Each preset's transforms after RandomResizedCrop, in torchvision's order
# (METHODS.md "Augmentations"), with its probabilities and jitter strengths.
PRESETS = {
    ("mocov1", 0): dict(ops=["gray", "jitter", "flip"], jitter=(0.4, 0.4, 0.4, 0.4), p_jitter=1.0, p_gray=0.2,
                        p_blur=0.0, p_sol=0.0, scale=(0.2, 1.0)),
    ("mocov2", 0): dict(ops=["jitter", "gray", "blur", "flip"], jitter=(0.4, 0.4, 0.4, 0.1), p_jitter=0.8,
                        p_gray=0.2, p_blur=0.5, p_sol=0.0, scale=(0.2, 1.0)),
    ("simclr", 0): dict(ops=["flip", "jitter", "gray", "blur"], jitter=(0.8, 0.8, 0.8, 0.2), p_jitter=0.8,
                        p_gray=0.2, p_blur=0.5, p_sol=0.0, scale=(0.08, 1.0)),
    ("byol", 0): dict(ops=["flip", "jitter", "gray", "blur", "solarize"], jitter=(0.4, 0.4, 0.2, 0.1),
                      p_jitter=0.8, p_gray=0.2, p_blur=1.0, p_sol=0.0, scale=(0.08, 1.0)),
    ("byol", 1): dict(ops=["flip", "jitter", "gray", "blur", "solarize"], jitter=(0.4, 0.4, 0.2, 0.1),
                      p_jitter=0.8, p_gray=0.2, p_blur=0.1, p_sol=0.2, scale=(0.08, 1.0)),
    ("supcon", 0): dict(ops=["flip", "jitter", "gray"], jitter=(0.4, 0.4, 0.4, 0.1), p_jitter=0.8, p_gray=0.2,
                        p_blur=0.0, p_sol=0.0, scale=(0.2, 1.0)),
}


def parse_draw(line):
    t = line.split()
    d = {"crop": tuple(map(int, t[1:5])), "order": list(map(int, t[10:14]))}
    for k in range(len(t)):
        if t[k] in ("flip", "jitter", "gray", "blur", "solarize"):
            d[t[k]] = int(t[k + 1])
        elif t[k] in ("b", "c", "s", "h", "sigma"):
            d[t[k]] = float(t[k + 1])
    return d


def torchvision_view(img, d, spec, size):
    i, j, h, w = d["crop"]
    out = F.resized_crop(img, i, j, h, w, [size, size], InterpolationMode.BILINEAR)
    k = int(0.1 * size)
    k += 1 - k % 2
    for op in spec["ops"]:
        if op == "flip" and d["flip"]:
            out = F.hflip(out)
        elif op == "gray" and d["gray"]:
            out = F.rgb_to_grayscale(out, num_output_channels=3)
        elif op == "blur" and d["blur"]:
            out = F.gaussian_blur(out, [k, k], [d["sigma"], d["sigma"]])
        elif op == "solarize" and d["solarize"]:
            out = F.solarize(out, 128)
        elif op == "jitter" and d["jitter"]:
            fns = [lambda x: F.adjust_brightness(x, d["b"]), lambda x: F.adjust_contrast(x, d["c"]),
                   lambda x: F.adjust_saturation(x, d["s"]), lambda x: F.adjust_hue(x, d["h"])]
            for f in d["order"]:
                out = fns[f](out)
    return F.normalize(F.to_tensor(out), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).numpy()


@pytest.mark.parametrize("preset,view", list(PRESETS))
def test_preset_view_equals_torchvision_composition(data_tool, images, tmp_path, preset, view):
    """A preset view in C, its draws replayed through torchvision's
    functional ops in the method's order: same tensor within 2/255."""
    spec = PRESETS[(preset, view)]
    size = 96
    worst = 0.0
    for index in range(4):
        name = ["rgb0", "rgb1"][index % 2]
        p = run_tool(data_tool, "view", f"{images[name]}.png", tmp_path / "v.npy", preset, view, size, 3, index)
        d = parse_draw(p.stdout.strip())
        ours = np.load(tmp_path / "v.npy")
        ref = torchvision_view(Image.open(f"{images[name]}.png").convert("RGB"), d, spec, size)
        worst = max(worst, float(np.abs(ours - ref).max()))
    assert worst <= 2 / 255 / 0.224 + 1e-5, worst


@pytest.mark.parametrize("preset,view", list(PRESETS))
def test_preset_draw_frequencies(data_tool, preset, view):
    spec = PRESETS[(preset, view)]
    n = 4000
    out = run_tool(data_tool, "draws", preset, view, 224, 11, n, 375, 500).stdout.strip().split("\n")
    draws = [parse_draw(l) for l in out]
    assert len(draws) == n

    def freq(key):
        return np.mean([d[key] for d in draws])
    # binomial standard error <= 0.008 at n = 4000: 5 sigma margins
    assert abs(freq("flip") - (0.5 if "flip" in spec["ops"] else 0)) < 0.04
    assert abs(freq("gray") - spec["p_gray"]) < 0.04
    assert abs(freq("jitter") - spec["p_jitter"]) < 0.04
    assert abs(freq("blur") - spec["p_blur"]) < 0.04
    assert abs(freq("solarize") - spec["p_sol"]) < 0.04
    jit = [d for d in draws if d["jitter"]]
    bj, cj, sj, hj = spec["jitter"]
    for key, a in (("b", bj), ("c", cj), ("s", sj)):
        v = np.array([d[key] for d in jit])
        assert v.min() >= max(0, 1 - a) and v.max() <= 1 + a
        assert v.min() < max(0, 1 - a) + 0.05 and v.max() > 1 + a - 0.05
    hv = np.array([d["h"] for d in jit])
    assert hv.min() >= -hj and hv.max() <= hj and hv.min() < -hj + 0.02 and hv.max() > hj - 0.02
    # the jitter order is a uniform permutation: each op first about 1/4 of the time
    firsts = np.bincount([d["order"][0] for d in jit], minlength=4) / len(jit)
    assert np.all(np.abs(firsts - 0.25) < 0.05)
    sig = np.array([d["sigma"] for d in draws if d["blur"]])
    if len(sig):
        assert sig.min() >= 0.1 and sig.max() <= 2.0
    scales = np.array([d["crop"][2] * d["crop"][3] / (375 * 500) for d in draws])
    assert scales.min() >= spec["scale"][0] - 0.01 and scales.max() <= 1.0


@pytest.mark.parametrize("name", ["rgb0", "rgb1", "rgb2"])
def test_eval_preset(data_tool, images, tmp_path, name):
    p = run_tool(data_tool, "view", f"{images[name]}.png", tmp_path / "v.npy", "eval", 0, 56, 0, 0)
    tf = T.Compose([T.Resize(64), T.CenterCrop(56), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ref = tf(Image.open(f"{images[name]}.png").convert("RGB")).numpy()
    assert np.abs(np.load(tmp_path / "v.npy") - ref).max() <= 2 / 255 / 0.224 + 1e-5
