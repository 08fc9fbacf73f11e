#!/usr/bin/python3
"""Draw the README's attack figure from a running service's own answers.

Posts one sample image to the service's real routes and composes what comes back into one PNG:

  1. clean        POST /v1/classify?defense=off                      (the undefended model's answer)
  2. FGSM         POST /v1/attacks/fgsm   (L-inf, epsilon 8/255)
  3. PGD          POST /v1/attacks/pgd    (L-inf, epsilon 8/255, 10 steps of 2/255, seeded random start)
  4. patch        POST /v1/attacks/patch  (6x6-pixel patch, 4.6% of the image, seeded placement)
  5. defended     POST /v1/classify?defense=mitigate on the patched PNG (the defense's answer), drawn over
                  POST /v1/defense/inspect (Accept: image/png): the defense's token-score heatmap of that image
                  (score / threshold per token), with the tokens the defense's report flagged framed in blue

Every caption is the service's answer for the picture above it: the attacks' label and probability are those of
the 8-bit PNG the service returned (`adversarialQuantized`), which is the image shown. Every random choice has a
fixed seed, so the same model gives the same figure. The numbers go into a JSON file beside the PNG so the README
can quote them.

Needs only Debian's /usr/bin/python3 with python3-requests and python3-pil (Pillow 9.4); captions use DejaVu Sans
(fonts-dejavu-core) when installed, else Pillow's built-in font.

Usage (repository root, with the service running, e.g.
`dotnet run --project src/StrapVit.Api --urls http://127.0.0.1:5177`):

    /usr/bin/python3 tools/readme/figures.py --url http://127.0.0.1:5177 [--api-key KEY]
        [--sample samples/ankle-boot.png] [--out docs/images/readme-attacks.png]
"""
import argparse
import base64
import io
import json
import sys
from pathlib import Path

import requests
from PIL import Image, ImageDraw, ImageFont

SCALE = 8  # 28x28 -> 224x224, nearest neighbour: every model pixel is an 8x8 block
SEED = 7  # seed of every attack's and the defense's random choices
TIMEOUT_S = 300

ATTACKS = [
    # (route, form fields, caption)
    ("fgsm", {"epsilon": "0.031372549"}, "FGSM L\u221e 8/255"),
    ("pgd", {"epsilon": "0.031372549", "stepSize": "0.007843137", "steps": "10", "norm": "linf"}, "PGD L\u221e 8/255, 10 steps"),
    ("patch", {"patchSize": "6", "steps": "200"}, "Patch 6x6 px (4.6%)"),
]


class Service:
    """The running service: one session, the API key on every request, problem+json turned into a readable error."""

    def __init__(self, url, api_key):
        self.url = url.rstrip("/")
        self.http = requests.Session()
        if api_key:
            self.http.headers["X-API-Key"] = api_key

    def post(self, route, png, params=None, data=None, accept="application/json"):
        response = self.http.post(
            self.url + route,
            params=params,
            data=data,
            files={"image": ("image.png", png, "image/png")},
            headers={"Accept": accept},
            timeout=TIMEOUT_S,
        )
        if response.status_code != 200:
            sys.exit(f"POST {route} answered {response.status_code}: {response.text[:500]}")
        return response

    def get(self, route):
        response = self.http.get(self.url + route, timeout=TIMEOUT_S)
        response.raise_for_status()
        return response


def font(size):
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return None  # Pillow's built-in bitmap font: Latin-1 only, so captions spell infinity as "inf"


def enlarge(png_bytes, side):
    image = Image.open(io.BytesIO(png_bytes)).convert("RGB")
    return image.resize((side, side), Image.NEAREST)


def shown_path(path):
    """The sample's path relative to the working directory (the repository root), so no machine path is recorded."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def outline_tokens(image, tokens, cell):
    """Frames each flagged token (row, col of the model's patch grid) on the enlarged heatmap."""
    draw = ImageDraw.Draw(image)
    for token in tokens:
        x, y = token["col"] * cell, token["row"] * cell
        draw.rectangle((x, y, x + cell - 1, y + cell - 1), outline=(0, 200, 255), width=2)


def prediction_text(prediction):
    return f"{prediction['label']} {prediction['probability']:.2f}"


def compose(panels, side, path):
    """panels: [(image, title, answer, correct)]; draws them in one row with two caption lines each."""
    title_font, answer_font = font(16), font(17)
    pad, caption_h = 12, 52
    width = pad + len(panels) * (side + pad)
    height = pad + side + caption_h
    figure = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(figure)
    for i, (image, title, answer, correct) in enumerate(panels):
        x = pad + i * (side + pad)
        figure.paste(image, (x, pad))
        if title_font is None:
            title, answer = title.replace("\u221e", "inf"), answer.replace("\u2192", "->")
        colour = (0, 110, 0) if correct else (190, 0, 0)
        for text, top, fill, face in ((title, 6, "black", title_font), (answer, 28, colour, answer_font)):
            left = x + (side - draw.textlength(text, font=face)) / 2
            draw.text((left, pad + side + top), text, fill=fill, font=face)
    figure = figure.quantize(colors=256, method=Image.MEDIANCUT, dither=Image.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path, optimize=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL of the running service, e.g. http://127.0.0.1:5177")
    parser.add_argument("--api-key", help="API key (X-API-Key), when the service has keys configured")
    parser.add_argument("--sample", default="samples/ankle-boot.png", help="image to attack (default: samples/ankle-boot.png)")
    parser.add_argument("--out", default="docs/images/readme-attacks.png", help="figure to write; the numbers go beside it as .json")
    args = parser.parse_args()

    service = Service(args.url, args.api_key)
    sample = Path(args.sample)
    clean_png = sample.read_bytes()
    model = service.get("/v1/model").json()
    side = model["input"]["height"] * SCALE

    clean = service.post("/v1/classify", clean_png, params={"defense": "off", "topK": 1}).json()["predictions"][0]
    truth = clean["label"]
    panels = [(enlarge(clean_png, side), "Clean", "\u2192 " + prediction_text(clean), True)]
    record = {
        "model": model["name"],
        "sample": shown_path(sample),
        "seed": SEED,
        "clean": {"prediction": clean},
        "attacks": {},
    }

    patched_png = None
    for name, fields, title in ATTACKS:
        answer = service.post(f"/v1/attacks/{name}", clean_png, data={**fields, "seed": str(SEED)}).json()
        png = base64.b64decode(answer["imagePng"])
        shown = answer["adversarialQuantized"]
        panels.append((enlarge(png, side), title, "\u2192 " + prediction_text(shown), shown["label"] == truth))
        record["attacks"][name] = {
            "caption": title,
            "parameters": {**fields, "seed": SEED},
            "success": answer["success"],
            "successQuantized": answer["successQuantized"],
            "original": answer["original"],
            "adversarial": answer["adversarial"],
            "adversarialQuantized": shown,
            "linf": round(answer["linf"], 6),
            "l2": round(answer["l2"], 6),
            "iterations": answer["iterations"],
            **({"patch": answer["patch"]} if answer.get("patch") else {}),
        }
        if name == "patch":
            patched_png = png

    defended = service.post("/v1/classify", patched_png, params={"defense": "mitigate", "seed": SEED, "topK": 1}).json()
    heatmap_png = service.post("/v1/defense/inspect", patched_png, params={"defense": "detect"}, accept="image/png").content
    top = defended["predictions"][0]
    report = defended["defense"]
    heatmap = enlarge(heatmap_png, side)
    outline_tokens(heatmap, report["flaggedTokens"], model["patchSize"] * SCALE)
    title = f"STRAP-ViT: {len(report['flaggedTokens'])} tokens flagged"
    panels.append((heatmap, title, "\u2192 " + prediction_text(top), top["label"] == truth))
    record["defense"] = {
        "caption": title,
        "input": "the patch attack's PNG",
        "mode": report["mode"],
        "variant": report["variant"],
        "seed": report["seed"],
        "prediction": top,
        "flaggedTokens": [{"row": t["row"], "col": t["col"]} for t in report["flaggedTokens"]],
        "heatmap": "POST /v1/defense/inspect?defense=detect, Accept: image/png",
    }

    out = Path(args.out)
    compose(panels, side, out)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for image, title, answer, _ in panels:
        print(f"{title:28} {answer}")
    print(f"wrote {out} ({out.stat().st_size // 1024} KB) and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
