"""How much a prompt-learning step costs, and what cliptune's two shortcuts buy.

(a) CoOp with a frozen image encoder: cliptune's training loop (``train.fit``) encodes every
    few-shot image once per augmented view and then trains on the cached features
    (``batch.features``); CoOp's reference code runs the image encoder on freshly augmented
    pixels in every step. Same model, same data, same optimiser; only the image path differs.
(b) CoCoOp: every image has its own prompts for every class (B x C text passes). The reference
    loops over the images; ``CoCoOp.forward`` encodes all B*C prompts in one batched call.

Model: tiny-v1 if data/zoo/tiny-v1.safetensors exists, else a random-init tiny CLIP (timings
depend on the architecture only). Data: the tiny world's "objects" task, 16 shots per class,
batch 32. Writes benchmarks/results/prompt_step.json. Run: ``python benchmarks/bench_prompt_step.py``
(about a minute on 2 CPU cores).
"""
from __future__ import annotations

import json
import pathlib
import platform
import statistics
import time

import open_clip
import torch
import torch.nn.functional as F

from cliptune import data, features, methods, models, runtime, train
from cliptune.methods.base import Batch

OUT = pathlib.Path(__file__).resolve().parent / "results" / "prompt_step.json"
TASK, SHOTS, BATCH, SEED = "objects", 16, 32, 1


def load_model() -> models.Clip:
    if (models.ZOO_DIR / "tiny-v1.safetensors").exists():
        return models.load_clip("tiny-v1", device="cpu", train_if_missing=False)
    model = models.build_tiny().eval().requires_grad_(False)
    return models.Clip("tiny-rand", None, model, open_clip.get_tokenizer("tiny-clip"))


def timed(step, n: int, warmup: int = 2) -> list[float]:
    for i in range(warmup):
        step(i)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        step(warmup + i)
        out.append(1000 * (time.perf_counter() - t0))
    return out


def bench_coop(clip, ds, n_steps: int) -> dict:
    labels = torch.as_tensor(ds.labels)
    cfg = train.TrainConfig(batch_size=BATCH, seed=SEED)

    def make(name="coop"):
        m = methods.create(name, clip).attach(clip, ds.classnames, ds.templates)
        return m, train.make_optimizer([p for p in m.parameters() if p.requires_grad], cfg)

    def batch_index(step):
        order = torch.randperm(len(ds), generator=runtime.generator(SEED, "epoch", 0))
        pos = step % train.steps_per_epoch(len(ds), BATCH)
        return order[pos * BATCH:(pos + 1) * BATCH], runtime.generator(SEED, "step", step)

    def sgd_step(m, opt, batch):
        logits = m(batch)
        loss, _ = m.loss(batch, logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # cached: exactly what train.fit builds (view 0 + cfg.n_views augmented views), once
    features.clear()
    t0 = time.perf_counter()
    views = torch.stack([features.image_features(clip, ds, v, seed=SEED)
                         for v in range(cfg.n_views + 1)])
    cache_s = time.perf_counter() - t0
    coop, opt = make()

    def cached(step):
        idx, gen = batch_index(step)
        v = torch.randint(0, len(views), (len(idx),), generator=gen)
        sgd_step(coop, opt, Batch(labels[idx], idx, features=views[v, idx], step=step))

    # re-encoded: augment the pixels and run the frozen image encoder in every step
    coop2, opt2 = make()

    def reencode(step):
        idx, gen = batch_index(step)
        x = models.augment(clip.prepare(ds.raw(idx.numpy())).cpu(), gen).to(clip.device)
        f = F.normalize(clip.model.encode_image(x), dim=-1)
        sgd_step(coop2, opt2, Batch(labels[idx], idx, features=f, step=step))

    t_cached = timed(cached, n_steps)
    t_reenc = timed(reencode, n_steps)
    # the whole loop as a user runs it (cache building included), for scale
    t0 = time.perf_counter()
    features.clear()
    m, _ = make()
    train.fit(m, ds, train.TrainConfig(batch_size=BATCH, seed=SEED, max_steps=n_steps),
              progress=False)
    fit_s = time.perf_counter() - t0
    med_c, med_r = statistics.median(t_cached), statistics.median(t_reenc)
    return {"cached_ms_per_step": med_c, "reencode_ms_per_step": med_r,
            "speedup": med_r / med_c, "cache_build_s": cache_s,
            "cache_views": cfg.n_views + 1, "break_even_steps": cache_s * 1000 / max(
                1e-9, med_r - med_c), "train_fit_s_for_steps": fit_s, "steps_timed": n_steps}


def bench_coop_real(n_steps: int = 3) -> dict:
    """The same comparison on a real architecture (ViT-B-16, random weights, 224 px): there
    the frozen image encoder, not the text side, dominates a step, as it does for users."""
    clip = models.load_clip("ViT-B-16", None, device="cpu")
    ds = data.few_shot(data.tiny("shapes", "train"), SHOTS, SEED)  # 10 classes, 160 images
    pixels = F.interpolate(models.tiny_pixels(ds.images), size=224, mode="bilinear")
    labels = torch.as_tensor(ds.labels)
    cfg = train.TrainConfig(batch_size=BATCH, seed=SEED)

    def make():
        m = methods.create("coop", clip).attach(clip, ds.classnames, ds.templates)
        return m, train.make_optimizer([p for p in m.parameters() if p.requires_grad], cfg)

    def sgd_step(m, opt, batch):
        loss, _ = m.loss(batch, m(batch))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    with torch.no_grad():
        feats = torch.cat([F.normalize(clip.model.encode_image(pixels[i:i + 64]), dim=-1)
                           for i in range(0, len(ds), 64)])
    cache_s = time.perf_counter() - t0
    a, opt_a = make()
    b, opt_b = make()

    def cached(step):
        idx = torch.arange(step * BATCH, (step + 1) * BATCH) % len(ds)
        sgd_step(a, opt_a, Batch(labels[idx], idx, features=feats[idx], step=step))

    def reencode(step):
        idx = torch.arange(step * BATCH, (step + 1) * BATCH) % len(ds)
        f = F.normalize(clip.model.encode_image(pixels[idx]), dim=-1)
        sgd_step(b, opt_b, Batch(labels[idx], idx, features=f, step=step))

    med_c = statistics.median(timed(cached, n_steps, warmup=1))
    med_r = statistics.median(timed(reencode, n_steps, warmup=1))
    return {"model": "ViT-B-16 (random init)", "classes": len(ds.classnames),
            "cached_ms_per_step": med_c, "reencode_ms_per_step": med_r,
            "speedup": med_r / med_c, "cache_build_s": cache_s, "steps_timed": n_steps}


def bench_cocoop(clip, ds, n_steps: int) -> dict:
    labels = torch.as_tensor(ds.labels)
    feats = features.image_features(clip, ds)
    m = methods.create("cocoop", clip).attach(clip, ds.classnames, ds.templates)
    opt = train.make_optimizer(list(m.parameters()), train.TrainConfig())
    batch = Batch(labels[:BATCH], torch.arange(BATCH), features=feats[:BATCH])
    with torch.no_grad():
        err = float((m(batch) - m.forward_loop(batch)).abs().max())

    def step_with(fn):
        def step(_):
            logits = fn(batch)
            loss = F.cross_entropy(logits, batch.labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    t_batched = timed(step_with(m.forward), n_steps, warmup=1)
    t_loop = timed(step_with(m.forward_loop), n_steps, warmup=1)
    med_b, med_l = statistics.median(t_batched), statistics.median(t_loop)
    return {"batched_ms_per_step": med_b, "loop_ms_per_step": med_l, "speedup": med_l / med_b,
            "prompts_per_step": BATCH * len(ds.classnames), "max_abs_logit_diff": err,
            "steps_timed": n_steps}


def main():
    runtime.set_threads()
    t_start = time.perf_counter()
    clip = load_model()
    train_set = data.few_shot(data.tiny(TASK, "train"), SHOTS, SEED)
    coop = bench_coop(clip, train_set, n_steps=30)
    cocoop = bench_cocoop(clip, train_set, n_steps=5)
    real = bench_coop_real()
    result = {
        "model": clip.key, "task": TASK, "shots": SHOTS, "batch_size": BATCH,
        "classes": len(train_set.classnames), "train_images": len(train_set),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.machine(), "device": str(clip.device),
        "coop_step": coop, "cocoop_step": cocoop, "coop_step_vit_b16": real,
        "total_s": time.perf_counter() - t_start,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"model {clip.key}, {TASK} {SHOTS}-shot ({len(train_set)} images, "
          f"{len(train_set.classnames)} classes), batch {BATCH}, {result['threads']} threads")
    print(f"(a) CoOp step, cached features : {coop['cached_ms_per_step']:8.1f} ms")
    print(f"    CoOp step, re-encoded images: {coop['reencode_ms_per_step']:8.1f} ms  "
          f"-> {coop['speedup']:.2f}x faster cached (cache of {coop['cache_views']} views built "
          f"once in {coop['cache_build_s']:.2f} s, pays off after "
          f"{coop['break_even_steps']:.0f} steps)")
    print(f"(b) CoCoOp step, batched        : {cocoop['batched_ms_per_step']:8.1f} ms")
    print(f"    CoCoOp step, per-image loop : {cocoop['loop_ms_per_step']:8.1f} ms  "
          f"-> {cocoop['speedup']:.2f}x faster batched ({cocoop['prompts_per_step']} prompts a "
          f"step; max |logit diff| {cocoop['max_abs_logit_diff']:.1e})")
    print(f"(c) ViT-B-16 (random weights, 224 px), {real['classes']} classes: cached "
          f"{real['cached_ms_per_step']:.0f} ms vs re-encoded {real['reencode_ms_per_step']:.0f} ms"
          f" -> {real['speedup']:.1f}x faster cached")
    print(f"wrote {OUT} in {result['total_s']:.0f} s")


if __name__ == "__main__":
    main()
