"""The catalog module's domain errors: each carries its HTTP status and a stable code."""

from __future__ import annotations

from tecnorev.core.errors import Conflict, NotFound, RuleViolation


class CategoryNotFound(NotFound):
    code = "category_not_found"


class ProductNotFound(NotFound):
    """Also the answer for an inactive product to a caller who may not see it, so its
    existence is not revealed."""

    code = "product_not_found"


class ImageNotFound(NotFound):
    code = "image_not_found"


class SlugTaken(Conflict):
    code = "slug_taken"


class SkuTaken(Conflict):
    code = "sku_taken"


class CategoryInUse(Conflict):
    """Details: ``{"children": bool, "products": bool}``: what still refers to it."""

    code = "category_in_use"


class UnknownCategory(RuleViolation):
    """A request names, as a parent or a product's category, a category that does not exist."""

    code = "unknown_category"


class CategoryCycle(RuleViolation):
    """A category moved under itself or under one of its own descendants."""

    code = "category_cycle"


class ImageOrderMismatch(RuleViolation):
    """Details: ``{"missing": [...], "unknown": [...], "duplicated": [...]}``."""

    code = "image_order_mismatch"


class InvalidPrice(RuleViolation):
    code = "invalid_price"
