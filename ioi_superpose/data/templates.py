"""IOI prompt material: the IOI paper's templates, names, places and objects (Wang et al. 2022), and
our off-distribution template families.

Slots: [A] is the indirect object (IO), [B] the subject (S). Every template ends with "… to [A]": the
prompt is the template without that last [A], which the model must predict.
"""

from __future__ import annotations

BABA_TEMPLATES: tuple[str, ...] = (
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to [A]",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to [A]",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to [A]",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to [A]",
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to [A]",
    "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument. Afterwards [B] said to [A]",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to [A]",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to [A]",
)


def _abba(template: str) -> str:
    """The mirror template: the names of the first clause swap order ([B] and [A] → [A] and [B])."""
    return template.replace("[B] and [A]", "[A] and [B]", 1)


ABBA_TEMPLATES: tuple[str, ...] = tuple(_abba(t) for t in BABA_TEMPLATES)

# In-distribution templates: BABA i has index i, its ABBA mirror index 15 + i.
IOI_TEMPLATES: tuple[str, ...] = BABA_TEMPLATES + ABBA_TEMPLATES

# Off-distribution families (indices continue after IOI_TEMPLATES so template ids stay unique).
LONG_TEMPLATES: tuple[str, ...] = (
    "Then in the morning, [B] and [A] went to the [PLACE] because the weather was nice. [B] gave a [OBJECT] to [A]",
    "After a long day at work, [B] and [A] went to the [PLACE] together. Later, [B] gave a [OBJECT] to [A]",
    "Then, [A] and [B] went to the [PLACE] and stayed there for a while. In the end, [B] gave a [OBJECT] to [A]",
    "When [A] and [B] arrived at the [PLACE] in the evening, they were tired, so [B] gave a [OBJECT] to [A]",
)
# The IO is named twice before the subject acts: a "which name is repeated" heuristic no longer
# separates IO from S, only the subject's position does.
DUPLICATED_IO_TEMPLATES: tuple[str, ...] = (
    "Then, [B] and [A] went to the [PLACE]. [A] was happy. [B] gave a [OBJECT] to [A]",
    "Then, [A] and [B] went to the [PLACE]. [A] sat down. [B] gave a [OBJECT] to [A]",
    "When [B] and [A] got to the [PLACE], [A] was tired, so [B] gave a [OBJECT] to [A]",
    "After [A] and [B] went to the [PLACE], [A] was hungry, and [B] gave a [OBJECT] to [A]",
)


def _without_preposition(template: str) -> str:
    """The double-object form: "… [B] gave a [OBJECT] to [A]" → "… [B] gave [A]" (the IO right after the verb)."""
    for ending in (" a [OBJECT] to [A]", " the [OBJECT] to [A]", " it to [A]"):
        if template.endswith(ending):
            return template[: -len(ending)] + " [A]"
    raise ValueError(f"no preposition to remove in {template!r}")


# In-distribution templates without "to" before the answer (BABA, then their ABBA mirrors): does the
# circuit need the preposition, or does it find the IO after any giving verb?
_WITH_OBJECT = tuple(t for t in BABA_TEMPLATES if t.endswith(("[OBJECT] to [A]", " it to [A]")))
NO_PREPOSITION_TEMPLATES: tuple[str, ...] = tuple(_without_preposition(t) for t in _WITH_OBJECT) + tuple(
    _abba(_without_preposition(t)) for t in _WITH_OBJECT
)

NAMES: tuple[str, ...] = (
    "Michael",
    "Christopher",
    "Jessica",
    "Matthew",
    "Ashley",
    "Jennifer",
    "Joshua",
    "Amanda",
    "Daniel",
    "David",
    "James",
    "Robert",
    "John",
    "Joseph",
    "Andrew",
    "Ryan",
    "Brandon",
    "Jason",
    "Justin",
    "Sarah",
    "William",
    "Jonathan",
    "Stephanie",
    "Brian",
    "Nicole",
    "Nicholas",
    "Anthony",
    "Heather",
    "Eric",
    "Elizabeth",
    "Adam",
    "Megan",
    "Melissa",
    "Kevin",
    "Steven",
    "Thomas",
    "Timothy",
    "Christina",
    "Kyle",
    "Rachel",
    "Laura",
    "Lauren",
    "Amber",
    "Brittany",
    "Danielle",
    "Richard",
    "Kimberly",
    "Jeffrey",
    "Amy",
    "Crystal",
    "Michelle",
    "Tiffany",
    "Jeremy",
    "Benjamin",
    "Mark",
    "Emily",
    "Aaron",
    "Charles",
    "Rebecca",
    "Jacob",
    "Stephen",
    "Patrick",
    "Sean",
    "Erin",
    "Jamie",
    "Kelly",
    "Samantha",
    "Nathan",
    "Sara",
    "Dustin",
    "Paul",
    "Angela",
    "Tyler",
    "Scott",
    "Katherine",
    "Andrea",
    "Gregory",
    "Erica",
    "Mary",
    "Travis",
    "Lisa",
    "Kenneth",
    "Bryan",
    "Lindsey",
    "Kristen",
    "Jose",
    "Alexander",
    "Jesse",
    "Katie",
    "Lindsay",
    "Shannon",
    "Vanessa",
    "Courtney",
    "Christine",
    "Alicia",
    "Cody",
    "Allison",
    "Bradley",
    "Samuel",
)
PLACES: tuple[str, ...] = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")
OBJECTS: tuple[str, ...] = ("ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack")
