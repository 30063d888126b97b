"""OpenAPI links between inventory operations (a drf-spectacular postprocessing hook).

Links say which response value feeds which later request: the SKU of a product
created or read, the id of a reservation made. Clients generated from the schema
and Schemathesis's stateful phase follow them.
"""

from __future__ import annotations

from typing import Any

SKU = "$response.body#/sku"
RESERVATION_ID = "$response.body#/id"


def _product_links() -> dict[str, Any]:
    return {
        "GetProduct": {
            "operationId": "v1_products_retrieve",
            "parameters": {"sku": SKU},
            "description": "Read the product back.",
        },
        "RestockProduct": {
            "operationId": "v1_products_restock_create",
            "parameters": {"sku": SKU},
            "description": "Add units on hand to the product.",
        },
        "ReserveProduct": {
            "operationId": "v1_reservations_create",
            "requestBody": {"sku": SKU},
            "description": "Reserve units of the product.",
        },
    }


def _reservation_links() -> dict[str, Any]:
    return {
        name: {
            "operationId": operation_id,
            "parameters": {"reservation_id": RESERVATION_ID},
            "description": description,
        }
        for name, operation_id, description in (
            ("GetReservation", "v1_reservations_retrieve", "Read it back."),
            ("ConfirmReservation", "v1_reservations_confirm_create", "Sell it."),
            ("CancelReservation", "v1_reservations_cancel_create", "Release it."),
        )
    }


# (path, method, status) -> links of that response.
LINKS = {
    ("/api/v1/products/", "post", "201"): _product_links,
    ("/api/v1/products/{sku}/", "get", "200"): _product_links,
    ("/api/v1/products/{sku}/restock/", "post", "200"): _product_links,
    ("/api/v1/reservations/", "post", "201"): _reservation_links,
    ("/api/v1/reservations/", "post", "200"): _reservation_links,
    ("/api/v1/reservations/{reservation_id}/", "get", "200"): _reservation_links,
}


def add_links(result: dict[str, Any], generator: Any, request: Any, public: bool):
    """Attach the links to the responses they start from."""
    paths = result.get("paths", {})
    for (path, method, status), links in LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is not None:
            response["links"] = links()
    return result
