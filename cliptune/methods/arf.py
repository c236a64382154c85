"""ARF (reconstructed): anchor-based robust fine-tuning (Han et al., CVPR 2024).

Introduced in notebook 05. **ARF's code was never released and its paper body could not be
read** (docs/research/anchorft_and_restore.md, section 2): this is the documented
reconstruction, labelled "ARF (reconstructed)" wherever a number is shown, with every unknown
a config field whose default is the reconstruction.

What is known: fine-tuning to "a photo of a [CLASS]" is an impoverished target; two kinds of
semantic anchors, added as contrastive losses to the standard CLIP (FLYP) loss, keep the
original feature space. The reconstruction (spec section 2.3):

    L = L_cls + lambda_tca * L_tca + lambda_ita * L_ita

    L_cls = L_clip(f(x), g(T(c_y)))      FLYP: a random template of the image's class
    L_tca = L_clip(f(x~), g(s))           text-compensated anchors: a second augmentation x~
                                          of the same images, with rich captions s = captioner(x)
    L_ita = L_clip(f(u), g(r))            image-text-pair anchors: an independent batch of
                                          retrieved pairs (u, r), each with its OWN caption r

L_clip is the symmetric InfoNCE with the shared, trained temperature. No term involves the
frozen model (no distillation): the anchors are the regulariser.

Captioner. The paper used BLIP2; the tiny world has an exact one, ``world.captioner(scene)``,
which names every attribute of a scene (colour, texture, size, count, background, domain).
For real data give a captions file (``captions=``: lines ``image<TAB>caption``) or set
``method.captioner = callable(image) -> str`` before training.

Retrieval (:func:`retrieve_anchors`). The paper retrieved from CC3M "according to the
downstream task", criterion unknown. Two reconstructions, switch ``retrieval``; both draw from
a captioned corpus like the pretraining data but separate from it and from every test set
(tiny world: ``world.corpus("retrieval", corpus_size, rich=False)``), keep the top ``k`` per
class, take the union, deduplicate by image content, and keep each pair's OWN caption:

- ``"text"`` (the spec's text-text ranking): the frozen CLIP's cosine between each class prompt
  (template-ensemble weight) and the candidate's caption. Measured on main, this returns pairs
  whose captions *are* class prompts ("a photo of a checkered object."), which add no
  semantics to the second anchor.
- ``"image"``: the frozen CLIP's cosine between the mean image feature of the class's
  fine-tuning images and each candidate image. The pairs look like the task's images and come
  with whatever the corpus says about them (colours, backgrounds, counts), which is what an
  image-text-pair anchor is for.

Candidates equal to a test image are dropped before ranking (the tiny world's corpora never
share a scene seed with a task split, so in the tiny world nothing is ever dropped, and
``build_anchors`` asserts it; the check is there for real pools). The spec's optional filter
on image-text score is not applied. Which retrieval is the default is decided by
:mod:`cliptune.selection` on tiny-v1 validation data; until that table is run it stays "text".

Captions that fit the context (``fit_captions``, default on). The captioner's rich captions
can exceed the text context (32 tokens in the tiny zoo; 27% of them did), and the tokenizer
then cuts their tail silently. :func:`fit_caption` instead drops whole clauses, first those
that add the fewest words the task cares about (the words of its class names) and then the
fewest new words at all, until the caption tokenises within the context.
:func:`cliptune.diagnostics.arf` reports how many captions were over before and after, how
often the anchors name attributes the class prompt lacks, and the retrieval precision.

Unknowns as config fields: retrieval, fit_captions, lambda_tca, lambda_ita (1.0 each:
"added"), k, corpus_size,
anchor_batch_size (the fine-tuning batch size), second_view (True), freeze_text (False).
Anchor batches and the second view are drawn with ``batch.generator``, so a resumed run draws
exactly the anchors the uninterrupted run drew.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import pathlib
import re

import numpy as np
import torch
import torch.nn.functional as F

from cliptune import models, text, world
from cliptune.methods import base, finetune, flyp


class CaptionsMissingError(ValueError):
    pass


@dataclasses.dataclass
class ARFConfig(flyp.FLYPConfig):
    lambda_tca: float = 1.0  # weight of the text-compensated anchor loss (unknown: [REC] 1)
    lambda_ita: float = 1.0  # weight of the image-text-pair anchor loss (unknown: [REC] 1)
    k: int = 16  # retrieved pairs per class (unknown)
    corpus_size: int = 4000  # tiny world: size of the retrieval candidate pool
    corpus_name: str = "retrieval"  # tiny world: which corpus (never a pretraining one)
    corpus_seed: int = 0
    anchor_batch_size: int = 0  # retrieved pairs per step; 0 = the fine-tuning batch size
    second_view: bool = True  # L_tca on a second augmentation of the images (else the same)
    captions: str | None = None  # real data: a file of 'image<TAB>caption' lines
    retrieval_pairs: str | None = None  # real data: the candidate pool, 'image<TAB>caption'
    exclude_tests: str = "all"  # tiny world: drop candidates equal to test images of "all"
    #                              tasks, of the fine-tuning "task" only, or "none"
    captioner_seed: int = 0
    retrieval: str = "text"  # "text" (class prompt vs caption) or "image" (class images vs image)
    fit_captions: bool = True  # drop clauses until every caption fits the text context


RETRIEVALS = ("text", "image")
PRESETS = {"text": {}, "image": {"retrieval": "image"},
           "text-truncated": {"fit_captions": False}}


@dataclasses.dataclass
class Anchors:
    """Retrieved image-text pairs, each with its own caption from the corpus."""
    images: object  # uint8 [K, H, W, 3] (tiny world) or a list of image paths
    captions: list
    indices: np.ndarray  # positions in the candidate corpus
    scores: np.ndarray  # each pair's best text-text cosine to a class prompt
    best_class: np.ndarray  # the class that scored it highest
    n_candidates: int
    n_excluded: int  # candidates dropped because they equal a test image
    by: str = "text"  # how they were retrieved
    scenes: tuple | None = None  # tiny world: what each retrieved image shows
    # read-only record of the ranking: [C, k] positions (into these pairs) of each class's top
    # k, best first; a pair can sit in several classes' lists (diagnostics.arf_per_class)
    ranked: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.captions)


# --------------------------------------------------------------------------- images, pools
def image_hashes(images) -> list[str]:
    """Content hashes of images (uint8 arrays, or file paths: the file's bytes)."""
    if isinstance(images, np.ndarray):
        return [hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images]
    return [hashlib.sha1(pathlib.Path(p).read_bytes()).hexdigest() for p in images]


def tiny_corpus(name: str, size: int, seed: int = 0):
    """The tiny world's retrieval pool (images, captions), rendered once per process."""
    images, captions, _ = tiny_corpus_scenes(name, size, seed)
    return images, captions


@functools.lru_cache(maxsize=4)
def tiny_corpus_scenes(name: str, size: int, seed: int = 0):
    """(images, captions, scenes) of the tiny world's retrieval pool."""
    pretraining = {r.corpus for r in models.ZOO.values()}
    if name in pretraining:
        raise ValueError(f"corpus_name {name!r} is a pretraining corpus of the tiny zoo; ARF's "
                         "anchors must come from a separate pool: use 'retrieval'")
    images, captions, scenes = world.corpus(name, size, seed=seed, rich=False)
    return images, tuple(captions), tuple(scenes)


@functools.lru_cache(maxsize=8)
def tiny_test_hashes(tasks: tuple) -> frozenset:
    """Hashes of every test image of ``tasks`` in every domain of the tiny world."""
    from cliptune import data
    out = set()
    for task in tasks:
        for domain in world.DOMAINS:
            out.update(image_hashes(data.tiny(task, "test", domain).images))
    return frozenset(out)


def read_pairs(path) -> tuple[list[str], list[str]]:
    """Read 'image<TAB>caption' lines; relative image paths are taken from the file's folder."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"captions file {path} does not exist; it should hold one "
                                "'image_path<TAB>caption' line per image")
    images, captions = [], []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        parts = line.split("\t", 1)
        if len(parts) != 2 or not parts[1].strip():
            raise ValueError(f"{path}: line {i + 1} is not 'image_path<TAB>caption': {line[:80]!r}")
        img = pathlib.Path(parts[0])
        images.append(str(img if img.is_absolute() else path.parent / img))
        captions.append(parts[1].strip())
    return images, captions


# --------------------------------------------------------------------------- captions
CLAUSE_BREAK = re.compile(r"\s*[,;]\s*")
STOPWORDS = frozenset("a an the of on in with as and is are there".split())


def token_length(clip, caption: str) -> int:
    """Tokens of ``caption`` including start and end, before any truncation."""
    if hasattr(clip.tokenizer, "encode"):
        return len(clip.tokenizer.encode(caption)) + 2
    return int((clip.tokenize([caption])[0] != 0).sum())  # tokenizers without encode: a bound


def context_length(clip) -> int:
    return int(clip.tokenize([""]).shape[1])


def _words(text_: str) -> set:
    return set(re.findall(r"[a-z]+", text_.lower())) - STOPWORDS


def fit_caption(caption: str, length, max_tokens: int, keep_words=frozenset()) -> str:
    """Drop whole clauses (split at ',' and ';'; the first is never dropped) until
    ``length(caption) <= max_tokens``. The clause dropped next adds the fewest ``keep_words``
    not said elsewhere, then the fewest new words at all; the later one on ties. A first
    clause that alone is too long is left to the tokenizer's truncation."""
    if length(caption) <= max_tokens:
        return caption
    stripped = caption.rstrip()
    end = stripped[-1] if stripped[-1:] in (".", "!", "?") else ""
    body = stripped[:-1] if end else stripped
    clauses = CLAUSE_BREAK.split(body)
    seps = [""] + CLAUSE_BREAK.findall(body)
    kept = list(range(len(clauses)))

    def build(idx):
        return "".join(seps[i] + clauses[i] if j else clauses[i] for j, i in enumerate(idx)) + end

    while len(kept) > 1 and length(build(kept)) > max_tokens:
        def cost(i):
            others = set().union(*(_words(clauses[j]) for j in kept if j != i))
            new = _words(clauses[i]) - others
            return (len(new & set(keep_words)), len(new), -i)
        kept.remove(min(kept[1:], key=cost))
    return build(kept)


def fit_captions(clip, captions, keep_words=frozenset()) -> tuple[list, dict]:
    """Every caption fitted to ``clip``'s context; counts of captions over it before and after."""
    n = context_length(clip)
    length = functools.partial(token_length, clip)
    fitted = [fit_caption(c, length, n, keep_words) for c in captions]
    over = {"n": len(captions), "over_before": sum(length(c) > n for c in captions),
            "over_after": sum(length(c) > n for c in fitted)}
    return fitted, over


# --------------------------------------------------------------------------- retrieval
@torch.no_grad()
def encode_pool_images(clip, images, batch_size: int = 512) -> torch.Tensor:
    """Normalised frozen image features of uint8 arrays or image file paths."""
    if isinstance(images, np.ndarray):
        return clip.encode_images(images, batch_size)
    from PIL import Image
    out = []
    for i in range(0, len(images), batch_size):
        pil = [Image.open(p).convert("RGB") for p in images[i:i + batch_size]]
        out.append(clip.encode_images(pil, batch_size))
    return torch.cat(out)


@torch.no_grad()
def retrieve_anchors(clip: models.Clip, classnames, templates, images, captions, k: int,
                     exclude_hashes=frozenset(), chunk_size: int = 512, by: str = "text",
                     query_images=None, query_labels=None) -> Anchors:
    """ITAR, reconstructed: the top-``k`` corpus pairs per class under the frozen CLIP, union
    over classes, deduplicated by image content, candidates equal to an excluded (test) image
    dropped before ranking. ``by="text"``: class prompt (template ensemble) against each
    candidate caption; ``by="image"``: the normalised mean feature of the class's
    ``query_images`` (labels ``query_labels``) against each candidate image. Every kept pair
    keeps its own corpus caption."""
    if k <= 0:
        raise ValueError(f"k (retrieved pairs per class) must be positive, not {k}")
    if by not in RETRIEVALS:
        raise ValueError(f"retrieval must be one of {RETRIEVALS}, not {by!r}")
    if len(images) != len(captions):
        raise ValueError(f"the retrieval pool has {len(images)} images but {len(captions)} "
                         "captions; they must pair up one to one")
    hashes = image_hashes(images)
    first_of, keep = {}, []
    n_excluded = 0
    for i, h in enumerate(hashes):  # drop test images, then exact duplicates
        if h in exclude_hashes:
            n_excluded += 1
        elif h not in first_of:
            first_of[h] = i
            keep.append(i)
    keep = np.asarray(keep, dtype=np.int64)
    if len(keep) == 0:
        raise ValueError("the retrieval pool is empty after removing test images")
    if by == "text":
        queries = base.zero_shot_weights(clip, classnames, templates)  # [C, D]
        tokens = clip.tokenize([captions[i] for i in keep])
        keys = text.encode_text(clip.model, tokens, chunk_size, normalize=True)  # [N, D]
    else:
        if query_images is None or query_labels is None:
            raise ValueError("retrieval='image' needs the fine-tuning images and labels "
                             "(query_images=, query_labels=) to rank candidates by")
        labels = torch.as_tensor(np.asarray(query_labels))
        missing = [classnames[c] for c in range(len(classnames)) if not (labels == c).any()]
        if missing:
            raise ValueError(f"retrieval='image' needs at least one fine-tuning image per class;"
                             f" none for {missing[:3]}")
        feats = encode_pool_images(clip, query_images)
        labels = labels.to(feats.device)
        queries = F.normalize(torch.stack([feats[labels == c].mean(0)
                                           for c in range(len(classnames))]), dim=-1)
        pool = images[keep] if isinstance(images, np.ndarray) else [images[i] for i in keep]
        keys = encode_pool_images(clip, pool)
    sim = queries @ keys.T  # [C, N]
    top = sim.topk(min(k, sim.shape[1]), dim=1).indices  # [C, k]
    chosen = torch.unique(top.flatten()).cpu()  # union over classes, sorted, no repeats
    best = sim[:, chosen.to(sim.device)].max(0)
    idx = keep[chosen.numpy()]
    pool_images = images[idx] if isinstance(images, np.ndarray) else [images[i] for i in idx]
    ranked = torch.searchsorted(chosen, top.cpu()).numpy()  # each list, as positions in idx
    return Anchors(pool_images, [captions[i] for i in idx], idx, best.values.cpu().numpy(),
                   best.indices.cpu().numpy(), len(images), n_excluded, by, ranked=ranked)


# --------------------------------------------------------------------------- the method
class ARF(flyp.FLYP):
    name = "arf"
    label = "ARF (reconstructed)"
    Config = ARFConfig
    captioner = None  # real data: callable(image) -> caption, overrides config.captions
    anchors = None  # the retrieved pairs (built by on_train_start)
    train_captions = None  # the fine-tuning images' rich captions (built by on_train_start)

    def on_train_start(self, train_set):
        cfg = self.config
        self._train_set = train_set
        self.anchors = None
        self.caption_fit = {}
        if cfg.retrieval not in RETRIEVALS:
            raise ValueError(f"ARF retrieval must be one of {RETRIEVALS}, not {cfg.retrieval!r}")
        keep = set().union(*(_words(c) for c in train_set.classnames))  # what the task names
        if cfg.lambda_tca:
            caps = self.fine_tuning_captions(train_set)
            if cfg.fit_captions:
                caps, self.caption_fit["tca"] = fit_captions(self.clip, caps, keep)
            self.register_buffer("caption_tokens", self.clip.tokenize(caps), persistent=False)
            self.train_captions = caps
        if cfg.lambda_ita:
            self.anchors = self.build_anchors(train_set)
            if cfg.fit_captions:
                self.anchors.captions, self.caption_fit["ita"] = fit_captions(
                    self.clip, self.anchors.captions, keep)
            self.register_buffer("anchor_pixels", self.clip.prepare(self.anchors.images),
                                 persistent=False)
            self.register_buffer("anchor_tokens", self.clip.tokenize(self.anchors.captions),
                                 persistent=False)

    # ------------------------------------------------------------------ anchors
    def fine_tuning_captions(self, train_set) -> list[str]:
        """TCAG: one rich caption per fine-tuning image, in the set's order."""
        if self.captioner is not None:
            return [str(self.captioner(train_set.images[i])) for i in range(len(train_set))]
        if self.config.captions:
            paths, caps = read_pairs(self.config.captions)
            by_path = dict(zip(paths, caps))
            by_name = {pathlib.Path(p).name: c for p, c in zip(paths, caps)}
            out = []
            for img in train_set.images:
                cap = by_path.get(str(img), by_name.get(pathlib.Path(str(img)).name))
                if cap is None:
                    raise CaptionsMissingError(
                        f"{self.config.captions} has no caption for fine-tuning image {img}; "
                        "add an 'image_path<TAB>caption' line for every training image")
                out.append(cap)
            return out
        if train_set.scenes is not None:
            return [world.captioner(s, self.config.captioner_seed) for s in train_set.scenes]
        raise CaptionsMissingError(
            f"ARF needs a rich caption for every fine-tuning image (its text-compensated "
            f"anchors), and {train_set.name} has none: it is not a tiny-world set. Pass "
            "captions='path/to/captions.tsv' (one 'image_path<TAB>caption' line per image, e.g. "
            "written by a captioner such as BLIP-2), or set method.captioner = "
            "callable(image_path) -> str, or switch the anchor off with lambda_tca=0.")

    def build_anchors(self, train_set) -> Anchors:
        """ITAR: retrieve pairs for the training classes with the frozen source CLIP."""
        cfg = self.config
        scenes = None
        if cfg.retrieval_pairs:
            images, captions = read_pairs(cfg.retrieval_pairs)
            exclude = frozenset()
        elif train_set.scenes is not None:
            images, captions, scenes = tiny_corpus_scenes(cfg.corpus_name, cfg.corpus_size,
                                                          cfg.corpus_seed)
            task = train_set.name.split("/")[0]
            tasks = {"all": tuple(world.TASKS), "task": (task,) if task in world.TASKS else (),
                     "none": ()}
            if cfg.exclude_tests not in tasks:
                raise ValueError(f"exclude_tests must be 'all', 'task' or 'none', not "
                                 f"{cfg.exclude_tests!r}")
            exclude = tiny_test_hashes(tasks[cfg.exclude_tests])
        else:
            raise ValueError(
                f"ARF's image-text-pair anchors need a candidate pool, and {train_set.name} is "
                "not a tiny-world set: pass retrieval_pairs='path/to/pool.tsv' ('image_path<TAB>"
                "caption' lines from a pretraining-like corpus, e.g. a CC3M shard; never a test "
                "set), or switch the anchor off with lambda_ita=0.")
        query = train_set.images if isinstance(train_set.images, np.ndarray) else \
            list(train_set.images)
        anchors = retrieve_anchors(self._source, self.classnames, self.templates, images,
                                   captions, cfg.k, exclude, by=cfg.retrieval,
                                   query_images=query, query_labels=train_set.labels)
        if scenes is not None:
            anchors.scenes = tuple(scenes[i] for i in anchors.indices)
        if train_set.scenes is not None and anchors.n_excluded:
            raise AssertionError(f"the tiny world's {cfg.corpus_name!r} corpus shares "
                                 f"{anchors.n_excluded} images with test sets: world.py's seed "
                                 "separation is broken")
        return anchors

    # ------------------------------------------------------------------ loss
    def _encode(self, pixels):
        return F.normalize(self.net.encode_image(pixels), dim=-1)

    def loss(self, batch, logits):
        if not self.training:
            return super().loss(batch, logits)
        cfg = self.config
        z_main = self._pairs[0]
        total, logs = super().loss(batch, logits)  # FLYP's L_cls
        scale = self.train_scale()
        if cfg.lambda_tca:
            if cfg.second_view:
                raw = self.clip.prepare(self._train_set.raw(batch.index.cpu().numpy()))
                z = self._encode(models.augment(raw.cpu(), batch.generator).to(raw.device))
            else:
                z = z_main
            g = self.encode_texts(self.caption_tokens[batch.index.to(self.caption_tokens.device)])
            l_tca = finetune.clip_loss(z, g, scale)
            total = total + cfg.lambda_tca * l_tca
            logs["tca"] = l_tca.item()
        if cfg.lambda_ita:
            n = len(self.anchor_tokens)
            size = min(n, cfg.anchor_batch_size or len(batch.labels))
            j = torch.randperm(n, generator=batch.generator)[:size]
            u = models.augment(self.anchor_pixels[j.to(self.anchor_pixels.device)].cpu(),
                               batch.generator).to(self.anchor_pixels.device)
            g = self.encode_texts(self.anchor_tokens[j.to(self.anchor_tokens.device)])
            l_ita = finetune.clip_loss(self._encode(u), g, scale)
            total = total + cfg.lambda_ita * l_ita
            logs["ita"] = l_ita.item()
        return total, logs
