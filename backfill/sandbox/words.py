"""Word lists the sandbox builds its books from.

The three title lists are disjoint and contain none of the filler words the
title patterns use ("the", "of", "and", ...): a title's adjective, first noun
and second noun together encode which month and which book it is (see
:mod:`backfill.sandbox.catalogue`), so a title search can find a book without
an index of every month.
"""

from __future__ import annotations

ADJECTIVES: tuple[str, ...] = (
    "Amber", "Ashen", "Bitter", "Blue", "Borrowed", "Broken", "Burning", "Cold", "Crimson",
    "Crooked", "Dark", "Distant", "Drowned", "Empty", "Endless", "Fallen", "Final", "Forgotten",
    "Fragile", "Gentle", "Gilded", "Glass", "Golden", "Green", "Hidden", "Hollow", "Honest",
    "Invisible", "Iron", "Last", "Little", "Lonely", "Lost", "Midnight", "Narrow", "Northern",
    "Painted", "Pale", "Paper", "Patient", "Quiet", "Restless", "Rising", "Salt", "Savage",
    "Scarlet", "Secret", "Silent", "Silver", "Small", "Southern", "Stolen", "Strange", "Sudden",
    "Sunken", "Tender", "Unfinished", "Wandering", "Wild", "Wooden",
)  # fmt: skip

NOUNS: tuple[str, ...] = (
    "Archive", "Atlas", "Bell", "Bridge", "Cartographer", "Cathedral", "Century", "Choir",
    "Circus", "Clockmaker", "Compass", "Country", "Daughter", "Diary", "Dreamer", "Empire",
    "Engine", "Falconer", "Ferryman", "Field", "Forest", "Fortune", "Garden", "Gardener",
    "Harvest", "Heir", "Hotel", "Hunter", "Island", "Keeper", "Kingdom", "Lantern", "Ledger",
    "Letter", "Library", "Lighthouse", "Machine", "Map", "Mapmaker", "Mirror", "Mountain",
    "Museum", "Orchard", "Painter", "Passenger", "Pilgrim", "Prophet", "Quarry", "Queen",
    "Railway", "River", "Road", "Sailor", "Season", "Shepherd", "Signal", "Sister", "Song",
    "Spy", "Station", "Stranger", "Swimmer", "Tailor", "Teacher", "Tide", "Tower", "Translator",
    "Traveler", "Tree", "Valley", "Village", "Violin", "Voyage", "Watchmaker", "Weaver",
    "Widow", "Window", "Witness", "Winter", "Year",
)  # fmt: skip

PLACES: tuple[str, ...] = (
    "Alders", "Anchors", "Apples", "Ashes", "Bones", "Branches", "Bricks", "Candles", "Cedars",
    "Clouds", "Coal", "Copper", "Cranes", "Crows", "Dunes", "Dust", "Embers", "Feathers",
    "Ferns", "Fjords", "Foxes", "Frost", "Ghosts", "Glaciers", "Gulls", "Harbors", "Hawks",
    "Hills", "Horses", "Ink", "Ivy", "Jasmine", "Kites", "Lakes", "Lemons", "Lilies", "Marble",
    "Marshes", "Meadows", "Moths", "Oaks", "Olives", "Owls", "Pearls", "Pines", "Poppies",
    "Rain", "Ravens", "Reeds", "Roses", "Saints", "Sand", "Sparrows", "Spices", "Stars",
    "Stone", "Storms", "Swans", "Thorns", "Thunder", "Tigers", "Tin", "Vines", "Violets",
    "Wells", "Whales", "Wheat", "Willows", "Wolves", "Wrens", "Yarrow", "Zephyrs", "Orchids",
    "Bees", "Ponies", "Quartz", "Rivets", "Shells", "Tulips", "Umbrellas",
)  # fmt: skip

# {a}: adjective, {n}: noun, {p}: place word. Filler words stay out of the lists above.
TITLE_PATTERNS: tuple[str, ...] = (
    "The {a} {n} of {p}",
    "{p} and the {a} {n}",
    "The {n} of {a} {p}",
    "A {a} {n} Among {p}",
    "The {a} {n}: A Novel of {p}",
    "Where the {a} {n} Meets the {p}",
    "Under {a} {p}, the {n}",
    "The {n} Beyond {a} {p}",
)

FIRST_NAMES: tuple[str, ...] = (
    "Ada", "Alan", "Amara", "Anton", "Beatrix", "Benedict", "Camille", "Caspar", "Chiara",
    "Daniel", "Delphine", "Dmitri", "Elena", "Emil", "Esther", "Farid", "Flora", "Gideon",
    "Greta", "Hana", "Hugo", "Imogen", "Isaac", "Jonas", "Josephine", "Kenji", "Lena",
    "Leopold", "Lucia", "Magnus", "Margot", "Matteo", "Mira", "Nadia", "Nikolai", "Nora",
    "Oscar", "Priya", "Rafael", "Rosalind", "Samuel", "Sofia", "Tobias", "Ursula", "Vera",
    "Viktor", "Wendell", "Yara", "Zoe", "Theo",
)  # fmt: skip

LAST_NAMES: tuple[str, ...] = (
    "Abernathy", "Adeyemi", "Albrecht", "Alvarez", "Bancroft", "Bellweather", "Brandt",
    "Castellano", "Chandler", "Delacroix", "Donnelly", "Eastwood", "Esposito", "Falkner",
    "Fitzgerald", "Gallagher", "Greenhalgh", "Halvorsen", "Hartley", "Ishikawa", "Jovanovic",
    "Kaminski", "Kowalczyk", "Lindqvist", "Lockhart", "Marchetti", "McAllister", "Moreau",
    "Nakamura", "Novak", "Okonkwo", "Ostrowski", "Pemberton", "Quintero", "Ravensworth",
    "Rosenthal", "Sandoval", "Schreiber", "Sorensen", "Thackeray", "Underhill", "Valentini",
    "Vasquez", "Whitlock", "Winterbourne", "Yamamoto", "Zielinski", "Achebe", "Brennan", "Okafor",
)  # fmt: skip

PUBLISHERS: tuple[str, ...] = (
    "Alder & Finch", "Blackwater Press", "Cobalt House", "Dovetail Books", "Ember Lane",
    "Foxglove Publishing", "Granite Street Books", "Harbor & Quill", "Inkwell Editions",
    "Juniper House", "Kestrel Books", "Lamplight Press", "Meridian Books", "Northlight",
    "Orchard Row", "Pelican & Crane", "Quarto Hill", "Riverbend Press", "Saltmarsh Books",
    "Thistle & Thorn",
)  # fmt: skip

REASONS_CLASSIC: tuple[str, ...] = (
    "A long-lasting bestseller that is still widely read and taught.",
    "Shaped its genre and was widely imitated in the following decade.",
    "Won a major literary prize and was translated into dozens of languages.",
    "A widely discussed debut that made its author's name.",
    "Adapted into a celebrated film that renewed interest in the book.",
    "A landmark of its decade, regularly cited in best-of lists.",
)

REASONS_RECENT: tuple[str, ...] = (
    "Longlisted for a major literary prize in its year of release.",
    "A critically noticed debut reviewed across the national press.",
    "Spent several weeks on the national bestseller lists.",
    "Shortlisted for a book-of-the-year award.",
    "A widely discussed release that topped reader polls.",
    "Named among the year's best books by several critics.",
)

SUBJECTS: tuple[str, ...] = (
    "Fiction", "Literary Fiction", "Historical Fiction", "Mystery", "Biography & Autobiography",
    "History", "Science", "Poetry", "Travel", "Essays",
)  # fmt: skip

FILLER_WORDS = frozenset(
    word.lower().strip(":,")
    for pattern in TITLE_PATTERNS
    for word in pattern.split()
    if not word.startswith("{")
)
