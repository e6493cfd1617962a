"""The prompt corpus for embedding compression: real documentation prefixes plus templated factual prompts.

``bayesmatrix corpus`` rebuilds ``data/shipped/corpus/prompts.jsonl`` (or
writes another file, :func:`write_corpus`); :func:`build_corpus` returns the
same records. The build is deterministic: sorted names, one seeded
``random.Random`` and no input but the Python installation itself.

Provenance
----------
Two sources, both available offline:

1. **Documentation prefixes** (``source = "doc"``, ``group`` = the module).
   The docstrings of the public functions, classes and class methods defined
   in the standard-library modules of :data:`DOC_MODULES`, as CPython 3.11.7
   ships them (other Python versions word a few docstrings differently, so
   the shipped file is the reference). Each docstring is split into
   paragraphs and sentences; a sentence is kept when it has at least
   :data:`MIN_SENTENCE_WORDS` words made only of letters, apostrophes and
   hyphens (with commas or semicolons attached), which drops code, signatures
   and markup. Each kept sentence gives one prompt: its first ``k`` words,
   ``k`` drawn uniformly from 3 to ``min(9, words - 1)``, so the prompt stops
   mid-sentence and the next word is real text. Duplicate prompts are dropped
   and :data:`DOC_PROMPTS` of them are drawn without replacement.
2. **Templated facts** (``source = "fact"``, ``group`` = the template's name).
   Every filler of :data:`FACT_TEMPLATES` in every template: capitals and
   languages of countries, cities' countries, birth years of well-known
   people, opposites of adjectives, plurals of nouns, colours of things,
   chemical symbols, young animals' names and small sums. Each template is a
   cluster of prompts whose next tokens share a type (a city, a year, a
   word), so the corpus has natural structure for the embedding model.

The output is JSON Lines, one record per prompt with fields ``prompt``,
``source`` and ``group`` (``bayesmatrix log`` reads the ``prompt`` field of a
prompt file). No prompt ends with a space: the next token carries its own leading
space, as it does in running text.
"""

from __future__ import annotations

import importlib
import inspect
import json
import random
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Iterator, NamedTuple

from bayesmatrix.data.atomic import write_text_atomic
from bayesmatrix.data.catalog import CORPUS_PROMPTS, resolve
from bayesmatrix.data.errors import InputError

SHIPPED_CORPUS = CORPUS_PROMPTS  # the name "corpus:prompts"
SEED = 20250
DOC_PROMPTS = 1600
MIN_SENTENCE_WORDS = 6
MIN_PREFIX_WORDS, MAX_PREFIX_WORDS = 3, 9
BUILT_WITH = "CPython 3.11.7"

# Pure documentation text: no code, no signatures, no markup.
_WORD = re.compile(r"^[A-Za-z][A-Za-z'-]*[,;]?$")

DOC_MODULES = (
    "abc argparse ast asyncio base64 bisect calendar cmd codecs collections colorsys configparser "
    "contextlib copy csv dataclasses datetime decimal difflib email.message enum filecmp fileinput "
    "fnmatch fractions ftplib functools getopt gettext glob gzip hashlib heapq hmac html.parser "
    "http.client http.cookies imaplib inspect io ipaddress itertools json linecache locale logging lzma "
    "mailbox math mimetypes numbers operator optparse os pathlib pickle pkgutil platform plistlib poplib "
    "pprint queue quopri random re sched secrets selectors shelve shlex shutil smtplib socket "
    "socketserver sqlite3 statistics string struct subprocess sys tarfile tempfile textwrap threading "
    "time timeit tokenize trace traceback types unittest urllib.parse urllib.request uuid warnings wave "
    "weakref xml.dom.minidom xml.etree.ElementTree zipfile zlib"
).split()

COUNTRIES = (
    "Afghanistan Albania Algeria Argentina Armenia Australia Austria Bangladesh Belgium Bolivia Brazil "
    "Bulgaria Cambodia Cameroon Canada Chile China Colombia Croatia Cuba Denmark Ecuador Egypt Estonia "
    "Ethiopia Finland France Georgia Germany Ghana Greece Hungary Iceland India Indonesia Iran Iraq "
    "Ireland Israel Italy Jamaica Japan Jordan Kenya Latvia Lebanon Lithuania Madagascar Malaysia Mali "
    "Mexico Mongolia Morocco Nepal Netherlands Nigeria Norway Pakistan Peru Poland Portugal Romania "
    "Russia Senegal Serbia Singapore Slovakia Somalia Spain Sudan Sweden Switzerland Syria Thailand "
    "Tunisia Turkey Uganda Ukraine Uruguay Venezuela Vietnam Zimbabwe"
).split()

CITIES = (
    "Paris Lyon Marseille Berlin Munich Hamburg Madrid Barcelona Seville Rome Milan Naples Lisbon Porto "
    "Vienna Zurich Geneva Amsterdam Rotterdam Brussels Antwerp Copenhagen Stockholm Oslo Helsinki Warsaw "
    "Krakow Prague Budapest Athens Istanbul Ankara Cairo Lagos Nairobi Casablanca Johannesburg Tokyo "
    "Osaka Kyoto Beijing Shanghai Shenzhen Seoul Busan Bangkok Hanoi Manila Jakarta Mumbai Delhi "
    "Bangalore Karachi Lahore Dhaka Tehran Baghdad Dubai Riyadh Moscow Kiev Toronto Vancouver Montreal "
    "Chicago Boston Houston Seattle Denver Miami Atlanta Philadelphia Sydney Melbourne Auckland Lima "
    "Santiago Bogota Caracas Havana"
).split()

PEOPLE = (
    "Albert Einstein|Isaac Newton|Charles Darwin|Marie Curie|Galileo Galilei|Nikola Tesla|Ada Lovelace|"
    "Alan Turing|Wolfgang Amadeus Mozart|Ludwig van Beethoven|Johann Sebastian Bach|Frederic Chopin|"
    "William Shakespeare|Jane Austen|Charles Dickens|Leo Tolstoy|Mark Twain|Victor Hugo|Virginia Woolf|"
    "Ernest Hemingway|Leonardo da Vinci|Michelangelo|Pablo Picasso|Vincent van Gogh|Claude Monet|"
    "Rembrandt|Napoleon Bonaparte|Abraham Lincoln|George Washington|Winston Churchill|Mahatma Gandhi|"
    "Nelson Mandela|Martin Luther King|Queen Victoria|Julius Caesar|Alexander the Great|Christopher Columbus|"
    "Karl Marx|Sigmund Freud|Friedrich Nietzsche|Immanuel Kant|Rene Descartes|Aristotle|Plato|"
    "Thomas Edison|Alexander Graham Bell|Louis Pasteur|Gregor Mendel|Niels Bohr|Max Planck|Richard Feynman|"
    "Stephen Hawking|Carl Friedrich Gauss|Leonhard Euler|Johannes Kepler|Nicolaus Copernicus|"
    "Florence Nightingale|Frida Kahlo|Elvis Presley|John Lennon"
).split("|")

ADJECTIVES = (
    "hot cold big small tall short long wide narrow thick thin heavy light fast slow early late old young "
    "new rich poor strong weak hard soft loud quiet happy sad good bad right wrong true false open closed "
    "full empty clean dirty dark bright wet dry high low deep shallow near far easy difficult cheap "
    "expensive safe dangerous sweet bitter rough smooth sharp dull brave cowardly kind cruel polite rude "
    "noisy calm sick healthy alive dead guilty innocent simple complex public private visible invisible "
    "possible impossible legal illegal"
).split()

NOUNS = (
    "mouse goose child man woman tooth foot person cactus fungus nucleus radius crisis thesis analysis "
    "phenomenon criterion datum medium index matrix vertex appendix ox sheep deer fish moose knife wife "
    "leaf wolf calf half loaf shelf life potato tomato hero echo city baby lady party country story box "
    "fox bus church dish glass watch boy toy key day"
).split()

COLOURED_THINGS = (
    "a ripe banana|a ripe tomato|fresh grass|the clear sky|fresh snow|coal|a lemon|an orange|a ripe cherry|"
    "an emerald|a ruby|a sapphire|milk|chocolate|a carrot|a pumpkin|a flamingo|a crow|a polar bear|"
    "a swan|a school bus in America|a fire truck|a stop sign|blood|the sun at noon|the ocean|"
    "a lime|an eggplant|a plum|a blueberry|gold|silver|copper|charcoal|ivory|a strawberry|an avocado|"
    "a raven|a canary|cream"
).split("|")

ELEMENTS = (
    "hydrogen helium lithium beryllium boron carbon nitrogen oxygen fluorine neon sodium magnesium "
    "aluminium silicon phosphorus sulfur chlorine argon potassium calcium titanium chromium manganese "
    "iron cobalt nickel copper zinc arsenic selenium bromine krypton silver tin iodine xenon platinum "
    "gold mercury lead uranium"
).split()

YOUNG_ANIMALS = (
    "cat dog cow horse sheep goat pig duck goose swan frog kangaroo bear lion tiger wolf fox deer "
    "rabbit owl eagle whale seal elephant giraffe zebra hen chicken butterfly fish"
).split()

SUM_TERMS = tuple(range(1, 10))

# (name, template, fillers); "{}" is replaced by each filler in turn.
FACT_TEMPLATES: tuple[tuple[str, str, tuple], ...] = (
    ("capital", "The capital of {} is", tuple(COUNTRIES)),
    ("language", "The official language of {} is", tuple(COUNTRIES)),
    ("city", "{} is a city in", tuple(CITIES)),
    ("born", "{} was born in the year", tuple(PEOPLE)),
    ("opposite", "The opposite of {} is", tuple(ADJECTIVES)),
    ("plural", "The plural of {} is", tuple(NOUNS)),
    ("colour", "The colour of {} is", tuple(COLOURED_THINGS)),
    ("element", "The chemical symbol for {} is", tuple(ELEMENTS)),
    ("young", "A young {} is called a", tuple(YOUNG_ANIMALS)),
    ("sum", "{} plus {} equals", tuple((a, b) for a in SUM_TERMS for b in SUM_TERMS)),
)


class CorpusRecord(NamedTuple):
    """One prompt of the corpus."""

    prompt: str
    """The text given to the LLM; the logged row is the distribution of the token after it."""
    source: str
    """``"doc"`` (a standard-library docstring prefix) or ``"fact"`` (a templated factual prompt)."""
    group: str
    """The module (doc) or the template name (fact): the prompt's cluster."""


def build_corpus(seed: int = SEED, doc_prompts: int = DOC_PROMPTS) -> list[CorpusRecord]:
    """The corpus: every templated fact, then ``doc_prompts`` documentation prefixes (see the module docstring)."""
    facts = [
        CorpusRecord(template.format(*(filler if isinstance(filler, tuple) else (filler,))), "fact", name)
        for name, template, fillers in FACT_TEMPLATES
        for filler in fillers
    ]
    rng = random.Random(seed)
    prefixes: dict[str, CorpusRecord] = {}
    for module, sentence in _fresh_doc_sentences():
        words = sentence.split()
        length = rng.randint(MIN_PREFIX_WORDS, min(MAX_PREFIX_WORDS, len(words) - 1))
        prompt = " ".join(words[:length]).rstrip(",;")
        prefixes.setdefault(prompt, CorpusRecord(prompt, "doc", module))
    docs = list(prefixes.values())
    if len(docs) < doc_prompts:
        raise InputError(f"found {len(docs)} documentation prefixes, fewer than the {doc_prompts} asked for",
                         field="doc_prompts")
    chosen = sorted(rng.sample(range(len(docs)), doc_prompts))
    return facts + [docs[i] for i in chosen]


def _fresh_doc_sentences() -> list[tuple[str, str]]:
    """:func:`_doc_sentences` as a fresh interpreter sees them.

    Libraries loaded in this process may patch the standard library (transformers
    adds ``logging.Logger.warning_once``; other imports replace functions of
    ``inspect``), which would change the sentences; a clean interpreter keeps
    the build a function of the Python version alone.
    """
    code = "import json; from bayesmatrix.data.corpus import _doc_sentences; print(json.dumps(list(_doc_sentences())))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [tuple(pair) for pair in json.loads(completed.stdout)]


def _doc_sentences() -> Iterator[tuple[str, str]]:
    """(module, sentence) for every kept docstring sentence, in a fixed order; the final period is dropped."""
    for module_name in DOC_MODULES:
        with warnings.catch_warnings():
            # Importing and walking a few modules touches deprecated aliases; they are only read.
            warnings.simplefilter("ignore")
            module = importlib.import_module(module_name)
            documented = list(_documented_objects(module))
        for obj in documented:
            for sentence in _sentences(inspect.cleandoc(obj.__doc__)):
                words = sentence[:-1].split()
                if len(words) >= MIN_SENTENCE_WORDS and all(_WORD.match(word) for word in words):
                    yield module_name, " ".join(words)


def _documented_objects(module) -> Iterator[object]:
    """Public functions and classes defined in ``module`` and the public methods defined in those classes."""
    for name in sorted(vars(module)):
        obj = vars(module)[name]
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
            continue
        if isinstance(obj.__doc__, str):
            yield obj
        if inspect.isclass(obj):
            for method_name in sorted(vars(obj)):
                method = vars(obj)[method_name]
                public = not method_name.startswith("_")
                if public and (inspect.isfunction(method) or inspect.ismethoddescriptor(method)):
                    if isinstance(getattr(method, "__doc__", None), str):
                        yield method


def _sentences(doc: str) -> Iterator[str]:
    """Sentences ending in a period, paragraph by paragraph, with whitespace collapsed."""
    for paragraph in re.split(r"\n\s*\n", doc):
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(paragraph.split())):
            if sentence.endswith("."):
                yield sentence


def corpus_jsonl(records: list[CorpusRecord]) -> str:
    return "".join(json.dumps(record._asdict(), ensure_ascii=True) + "\n" for record in records)


def read_corpus(path: str | Path = SHIPPED_CORPUS) -> list[CorpusRecord]:
    """The records of a corpus file written by :func:`write_corpus` (or its name, ``"corpus:prompts"``)."""
    path = resolve(path, field="prompts")
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        try:
            fields = json.loads(line)
            records.append(CorpusRecord(fields["prompt"], fields["source"], fields["group"]))
        except (ValueError, KeyError, TypeError):
            raise InputError("is not a corpus record (JSON with prompt, source, group)", file=str(path),
                             field="prompt", row=number - 1) from None
    return records


def write_corpus(path: str | Path = SHIPPED_CORPUS, seed: int = SEED, doc_prompts: int = DOC_PROMPTS) -> Path:
    """Build the corpus and write it atomically as JSON Lines."""
    records = build_corpus(seed, doc_prompts)
    write_text_atomic(path, corpus_jsonl(records))
    return Path(path)
