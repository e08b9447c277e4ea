"""Duplicate detection: which stored story an article is a copy of.

Three tests, cheapest first: the canonical URL (done when entries are recorded), an exact hash of the
normalised text, and near-duplicates by MinHash over word shingles. Near-duplicate candidates
come from locality-sensitive hashing: the signature is cut into bands, and any stored article sharing a band
with this one is a candidate (storage keeps the band keys in an indexed table, so the index lives in the
database, not in a process). A candidate whose signature shows an overlap far above the threshold is a copy;
the others are confirmed on the exact shingle overlap of both texts.

The parameters are tuned by ``bench/dedup_quality.py`` on syndicated copies with different site chrome,
word-spun copies and different articles on the same event.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cache

import numpy as np

#: words per shingle: 3 keeps formulaic texts on different events apart while word-spun copies still share
#: a third of their shingles at 20% spin
SHINGLE_WORDS = 3
#: LSH bands × rows per band = MinHash permutations; with 2 rows, a pair sharing 25% of its shingles becomes
#: a candidate with probability 1 - (1 - 0.25²)^50 ≈ 0.96, one sharing 1% with probability 0.005
BANDS, ROWS = 50, 2
NUM_PERM = BANDS * ROWS
#: shingle overlap (Jaccard) from which two texts are copies of one story
SAME_STORY_JACCARD = 0.22
#: the overlap needed between two articles of the same site: a site's own template paragraphs (lists of
#: participants, standard background, disclaimers) make its different articles look alike, while a site
#: does not republish its own story under another URL in other words
SAME_SITE_JACCARD = 0.6
#: texts with fewer words than this are compared by exact hash only: a headline and a sentence are too
#: little to tell a copy from a different item that happens to share a phrase
MIN_WORDS = 25
#: below this many words not even an exact copy counts: two items titled "Live updates" are not one story
MIN_EXACT_WORDS = 8
_SEED = 20_261_123
_ESTIMATE_MARGIN = 0.1
#: candidates whose full texts are compared, most similar first
MAX_COMPARISONS = 5

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W_]+")


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What identifies an article's text: its exact hash and, for long enough texts, its MinHash bands."""

    #: SHA-256 of the normalised words; empty for texts too short to identify a story
    content_hash: str
    #: the MinHash signature (NUM_PERM unsigned 32-bit values), empty for short texts
    signature: bytes
    #: one LSH key per band (signed 63-bit integers, the database's BIGINT)
    band_keys: tuple[int, ...]
    #: the text fingerprinted, to confirm candidates on its shingles (not stored; a text crosses from an
    #: extraction worker in a fraction of the time its set of shingles took)
    text: str = field(default="", compare=False, repr=False)

    def word_shingles(self) -> set[str]:
        return shingles(tokens(self.text))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored article sharing an LSH band with a new one: its story and MinHash signature."""

    article_id: int
    story_id: int
    signature: bytes
    site: str | None = None


def tokens(text: str) -> list[str]:
    """Case-folded words; CJK characters one by one (those scripts do not separate words by spaces)."""
    return _TOKEN.findall(text.casefold())


def shingles(words: Sequence[str]) -> set[str]:
    if len(words) <= SHINGLE_WORDS:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


def fingerprint(text: str) -> Fingerprint:
    """The content hash and LSH band keys of an article's (chrome-free) text."""
    words = tokens(text)
    if len(words) < MIN_EXACT_WORDS:
        return Fingerprint("", b"", ())
    content_hash = hashlib.sha256(" ".join(words).encode("utf-8")).hexdigest()
    if len(words) < MIN_WORDS:
        return Fingerprint(content_hash, b"", ())
    values = minhash(_shingle_hashes(words))
    return Fingerprint(content_hash, values.astype("<u4").tobytes(), band_keys(values), text)


def _shingle_hashes(words: Sequence[str]) -> np.ndarray:
    """The CRC-32 of each shingle where it occurs (more than SHINGLE_WORDS words): a repeated shingle is
    hashed again rather than set aside first, which costs less, and a MinHash, a minimum, is the same."""
    runs = zip(*(words[i:] for i in range(SHINGLE_WORDS)), strict=False)
    return np.fromiter(map(zlib.crc32, map(str.encode, map(" ".join, runs))), np.uint32)


def minhash(hashes: np.ndarray) -> np.ndarray:
    """The MinHash signature (NUM_PERM uint32 values) of a set, given its members' 32-bit hashes.

    The scheme is datasketch's "affine32" (datasketch 2.0's default, with which the stored signatures were
    first made, and which a test checks this against): each hash is mixed by MurmurHash3's finalizer, then
    put through NUM_PERM affine maps h -> a*h + b mod 2^32 seeded by _SEED; the signature is each map's
    minimum. Written out here because importing datasketch imports SciPy for its LSH parameter search,
    41 MB of the daemon's memory for two lines of arithmetic, and because a library changing its default
    scheme would silently make new signatures incomparable with stored ones."""
    a, b = _permutations()
    mixed = _fmix32(hashes.astype(np.uint32))
    with np.errstate(over="ignore"):
        images = np.multiply.outer(a, mixed)  # a map per row, so each minimum is over contiguous memory
        images += b[:, None]
    signature: np.ndarray = images.min(axis=1)
    return signature


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (a bijection that spreads every input bit over the output)."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x85EBCA6B)
        h = h ^ (h >> np.uint32(13))
        h = h * np.uint32(0xC2B2AE35)
        mixed: np.ndarray = h ^ (h >> np.uint32(16))
    return mixed


def band_keys(values: np.ndarray) -> tuple[int, ...]:
    """One key per band, the band's number included so equal values in different bands do not collide."""
    keys = []
    for band in range(BANDS):
        digest = hashlib.blake2b(
            band.to_bytes(2, "little") + values[band * ROWS : (band + 1) * ROWS].tobytes(), digest_size=8
        ).digest()
        keys.append(int.from_bytes(digest, "little") >> 1)
    return tuple(keys)


def jaccard(a: AbstractSet[str], b: AbstractSet[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def threshold(site: str | None, other_site: str | None) -> float:
    """The overlap from which two texts are copies of one story, given the sites they are on."""
    return SAME_SITE_JACCARD if site and site == other_site else SAME_STORY_JACCARD


def find_story(
    mine: Fingerprint,
    candidates: Sequence[Candidate],
    *,
    site: str | None,
    load_texts: Callable[[Sequence[int]], Mapping[int, str]],
) -> int | None:
    """The story of the candidate this text is a copy of, or None.

    Candidates are ranked by their signatures' estimate of the overlap (it errs by about 0.05 here). One far
    above the threshold is a copy; otherwise the texts of the best few (``load_texts``, by article id) are
    compared exactly, and the best at or above the threshold for the two sites wins."""
    ranked = _ranked(mine, candidates, site)
    if not ranked:
        return None
    best, estimate = ranked[0]
    if estimate >= threshold(site, best.site) + _ESTIMATE_MARGIN * 3:
        return best.story_id
    texts = load_texts([c.article_id for c, _ in ranked])
    own, found, found_score = mine.word_shingles(), None, 0.0
    for candidate, _ in ranked:
        if candidate.article_id not in texts:
            continue
        score = jaccard(own, shingles(tokens(texts[candidate.article_id])))
        if score >= threshold(site, candidate.site) and score > found_score:
            found, found_score = candidate.story_id, score
    return found


def _ranked(
    mine: Fingerprint, candidates: Sequence[Candidate], site: str | None
) -> list[tuple[Candidate, float]]:
    """The candidates whose estimated overlap is near or above their threshold, best first, at most
    ``MAX_COMPARISONS``."""
    usable = [c for c in candidates if len(c.signature) == NUM_PERM * 4]
    if not mine.signature or not usable:
        return []
    own = np.frombuffer(mine.signature, dtype="<u4")
    others = np.frombuffer(b"".join(c.signature for c in usable), dtype="<u4").reshape(-1, NUM_PERM)
    estimates = (others == own).mean(axis=1)
    ranked = [
        (usable[i], float(estimates[i]))
        for i in np.argsort(-estimates, kind="stable")
        if estimates[i] >= threshold(site, usable[i].site) - _ESTIMATE_MARGIN
    ]
    return ranked[:MAX_COMPARISONS]


@cache
def _permutations() -> tuple[np.ndarray, np.ndarray]:
    """The NUM_PERM affine maps (a odd, b any) of the seed, drawn as datasketch draws them."""
    rng = np.random.RandomState(_SEED)
    a = rng.randint(0, 1 << 31, NUM_PERM, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = rng.randint(0, 1 << 32, NUM_PERM, dtype=np.uint32)
    return a, b
