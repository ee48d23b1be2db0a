"""Demo data of the catalog module: a three-level category tree and 300 products made from
word lists with the context's seeded random generator (the same SKUs on every machine), a few
of them inactive, some with images.

Leaves for later loaders: ``catalog.products``, a list of :class:`DemoProduct` in a fixed
order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple, cast

import sqlalchemy as sa
from sqlmodel import Session, col, select

from tecnorev.catalog.models import Category, Product
from tecnorev.catalog.service import add_image, create_category, create_product

if TYPE_CHECKING:
    from tecnorev.core.demo import DemoContext

PRODUCTS_PER_LEAF = 20
INACTIVE = 8
IMAGE_SHARE = 0.4
IMAGE_HOST = "https://cdn.example.com/products"


@dataclass(frozen=True)
class Leaf:
    """A bottom category and the words its products are made of."""

    name: str
    slug: str
    parent: str  # slug
    code: str  # first part of its products' SKUs
    brands: tuple[str, ...]
    kinds: tuple[str, ...]
    variants: tuple[str, ...]
    prices: tuple[int, int]  # whole currency units, lowest and highest


# (name, slug, parent slug): the two upper levels, parents first
UPPER: tuple[tuple[str, str, str | None], ...] = (
    ("Tools", "tools", None),
    ("Power tools", "power-tools", "tools"),
    ("Hand tools", "hand-tools", "tools"),
    ("Garden", "garden", None),
    ("Watering", "watering", "garden"),
    ("Garden tools", "garden-tools", "garden"),
    ("Kitchen", "kitchen", None),
    ("Cookware", "cookware", "kitchen"),
    ("Cutlery", "cutlery", "kitchen"),
    ("Electrical", "electrical", None),
    ("Lighting", "lighting", "electrical"),
)

TOOLS = ("Ferrox", "Voltra", "Hartwell", "Tecnoforte", "Bricko")
GARDEN = ("Verdant", "Norden", "Hartwell", "Jardinero")
KITCHEN = ("Cocina Real", "Norden", "Granito", "Hartwell")
LIGHTS = ("Lumina", "Voltra", "Norden", "Brillo")

LEAVES: tuple[Leaf, ...] = (
    Leaf(
        "Drills", "drills", "power-tools", "DRL", TOOLS,
        ("Cordless Drill", "Hammer Drill", "Impact Driver", "Drill Driver"),
        ("12V", "18V", "18V Brushless", "Corded 750W", "Compact"),
        (39, 249),
    ),
    Leaf(
        "Saws", "saws", "power-tools", "SAW", TOOLS,
        ("Circular Saw", "Jigsaw", "Reciprocating Saw", "Mitre Saw"),
        ("Compact", "Pro", "Brushless", "Corded", "Cordless 18V"),
        (49, 399),
    ),
    Leaf(
        "Sanders", "sanders", "power-tools", "SND", TOOLS,
        ("Orbital Sander", "Belt Sander", "Detail Sander", "Random Orbit Sander"),
        ("125mm", "150mm", "240W", "300W", "Cordless 18V"),
        (29, 159),
    ),
    Leaf(
        "Hammers", "hammers", "hand-tools", "HAM", TOOLS,
        ("Claw Hammer", "Sledgehammer", "Ball Pein Hammer", "Rubber Mallet"),
        ("300g", "450g", "570g", "800g", "1kg"),
        (9, 59),
    ),
    Leaf(
        "Screwdrivers", "screwdrivers", "hand-tools", "SCR", TOOLS,
        ("Screwdriver Set", "Precision Screwdriver Set", "Ratchet Screwdriver"),
        ("6-piece", "10-piece", "32-piece", "Insulated", "Magnetic"),
        (5, 49),
    ),
    Leaf(
        "Wrenches", "wrenches", "hand-tools", "WRN", TOOLS,
        ("Adjustable Wrench", "Combination Wrench Set", "Pipe Wrench", "Socket Set"),
        ("150mm", "250mm", "300mm", "12-piece", "Chrome Vanadium"),
        (9, 129),
    ),
    Leaf(
        "Hoses", "hoses", "watering", "HOS", GARDEN,
        ("Garden Hose", "Expandable Hose", "Hose Reel", "Soaker Hose"),
        ("15m", "20m", "25m", "30m", "50m"),
        (14, 89),
    ),
    Leaf(
        "Sprinklers", "sprinklers", "watering", "SPK", GARDEN,
        ("Oscillating Sprinkler", "Rotary Sprinkler", "Pulse Sprinkler"),
        ("Compact", "Pro", "Metal", "4-zone", "8-pattern"),
        (7, 69),
    ),
    Leaf(
        "Shovels and spades", "shovels-and-spades", "garden-tools", "SHV", GARDEN,
        ("Round Shovel", "Garden Spade", "Trenching Shovel", "Hand Trowel"),
        ("Ash Handle", "Fibreglass Handle", "Steel Handle", "Long Handle", "D-Grip"),
        (9, 59),
    ),
    Leaf(
        "Pruners", "pruners", "garden-tools", "PRN", GARDEN,
        ("Bypass Pruner", "Anvil Pruner", "Lopper", "Hedge Shears"),
        ("20mm", "25mm", "Telescopic", "Ratchet", "Compact"),
        (9, 79),
    ),
    Leaf(
        "Frying pans", "frying-pans", "cookware", "FRY", KITCHEN,
        ("Non-stick Frying Pan", "Cast Iron Skillet", "Wok", "Grill Pan"),
        ("20cm", "24cm", "28cm", "30cm", "32cm"),
        (14, 119),
    ),
    Leaf(
        "Saucepans", "saucepans", "cookware", "SCP", KITCHEN,
        ("Saucepan", "Stockpot", "Casserole", "Milk Pan"),
        ("1.5L", "2L", "3L", "5L", "8L"),
        (15, 149),
    ),
    Leaf(
        "Kitchen knives", "kitchen-knives", "cutlery", "KNF", KITCHEN,
        ("Chef's Knife", "Santoku Knife", "Bread Knife", "Paring Knife"),
        ("Stainless", "Damascus", "Carbon Steel", "Forged", "Pro"),
        (12, 189),
    ),
    Leaf(
        "LED bulbs", "led-bulbs", "lighting", "LED", LIGHTS,
        ("LED Bulb E27", "LED Bulb GU10", "LED Bulb E14", "Smart LED Bulb"),
        ("4W Warm White", "6W Warm White", "9W Cool White", "12W Daylight", "2-pack"),
        (3, 29),
    ),
    Leaf(
        "Work lights", "work-lights", "lighting", "WLT", LIGHTS,
        ("LED Work Light", "Headlamp", "Inspection Lamp", "Floodlight"),
        ("1000lm", "2000lm", "3000lm", "5000lm", "USB-C"),
        (12, 129),
    ),
)  # fmt: skip

_CENTS = ("99", "99", "49", "95", "00")


class PlannedProduct(NamedTuple):
    sku: str
    name: str
    description: str
    price: Decimal
    is_active: bool
    leaf_slug: str
    images: int


class DemoProduct(NamedTuple):
    """What later loaders need of a demo product."""

    id: int
    sku: str
    price: Decimal
    is_active: bool


def categories() -> list[tuple[str, str, str | None]]:
    """(name, slug, parent slug) of every category, parents first."""
    return [*UPPER, *((leaf.name, leaf.slug, leaf.parent) for leaf in LEAVES)]


def plan_products(rng: random.Random) -> list[PlannedProduct]:
    """Every demo product, always the same for the same generator state."""
    planned: list[PlannedProduct] = []
    skus: set[str] = set()
    for leaf in LEAVES:
        combos = [(b, k, v) for b in leaf.brands for k in leaf.kinds for v in leaf.variants]
        for brand, kind, variant in rng.sample(combos, PRODUCTS_PER_LEAF):
            sku = ""
            while not sku or sku in skus:
                brand_code = "".join(ch for ch in brand.upper() if ch.isalpha())[:3]
                sku = f"{leaf.code}-{brand_code}-{rng.randrange(1000, 10000)}"
            skus.add(sku)
            low, high = leaf.prices
            price = Decimal(f"{rng.randint(low, high)}.{rng.choice(_CENTS)}")
            images = rng.randint(1, 3) if rng.random() < IMAGE_SHARE else 0
            planned.append(
                PlannedProduct(
                    sku=sku,
                    name=f"{brand} {kind} {variant}",
                    description=f"{kind} by {brand}, {variant}. Sold under {leaf.name.lower()}.",
                    price=price,
                    is_active=True,
                    leaf_slug=leaf.slug,
                    images=images,
                )
            )
    for index in rng.sample(range(len(planned)), INACTIVE):  # discontinued lines
        planned[index] = planned[index]._replace(is_active=False)
    return planned


def load(session: Session, ctx: DemoContext) -> str:
    rng = random.Random(ctx.random.getrandbits(64))
    planned = plan_products(rng)  # before any lookup: the same draws whatever is stored
    author_id = ctx.values.get("auth.manager_id")

    # cast: an id read from the table is never NULL (the model's ``int | None`` is for a new row)
    category_ids = cast(
        dict[str, int],
        dict(
            session.exec(
                select(Category.slug, Category.id).where(
                    col(Category.slug).in_([slug for _, slug, _ in categories()])
                )
            ).all()
        ),
    )
    new_categories = 0
    for name, slug, parent in categories():
        if slug not in category_ids:
            parent_id = category_ids[parent] if parent else None
            category = create_category(
                session, name=name, slug=slug, parent_id=parent_id, author_id=author_id
            )
            assert category.id is not None  # set by the flush
            category_ids[slug] = category.id
            new_categories += 1

    stored = {
        row.sku: row
        for row in session.execute(
            sa.select(
                col(Product.id), col(Product.sku), col(Product.price), col(Product.is_active)
            ).where(col(Product.sku).in_([p.sku for p in planned]))
        )
    }
    new_products = new_inactive = new_images = 0
    products: list[DemoProduct] = []
    for plan in planned:
        row = stored.get(plan.sku)
        if row is not None:
            products.append(DemoProduct(row.id, row.sku, Decimal(row.price), row.is_active))
            continue
        product = create_product(
            session,
            sku=plan.sku,
            name=plan.name,
            description=plan.description,
            price=plan.price,
            is_active=plan.is_active,
            category_id=category_ids[plan.leaf_slug],
            author_id=author_id,
        )
        assert product.id is not None  # set by the flush
        for position in range(plan.images):
            add_image(
                session,
                product.id,
                url=f"{IMAGE_HOST}/{plan.sku.lower()}/{position + 1}.jpg",
                alt_text=f"{plan.name}, view {position + 1}",
                author_id=author_id,
            )
        new_products += 1
        new_inactive += not plan.is_active
        new_images += plan.images
        products.append(DemoProduct(product.id, plan.sku, product.price, plan.is_active))
    ctx.values["catalog.products"] = products

    if not new_categories and not new_products:
        return f"{len(category_ids)} categories and {len(planned)} products already there"
    return (
        f"added {new_categories} categories, {new_products} products "
        f"({new_inactive} inactive), {new_images} images"
    )
