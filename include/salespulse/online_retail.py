"""Map the UCI Online Retail data set (invoice lines) onto the SalesPulse CRM model.

Source: UCI Machine Learning Repository, "Online Retail" (Chen, Sain and Guo, 2012), CC BY 4.0,
doi:10.24432/C5BW33. The data is not copied into this project: pass the path of the parquet file.

Choices, so that nothing is cleaned away silently (the quality gate decides what is held back):

- An invoice is an order; a line keeps its position within the invoice as ``line_number``.
- ``C`` invoices are credit notes: status ``returned`` with the quantity made positive.
  Other invoices are ``completed``; the three ``A`` (adjust bad debt) invoices get status
  ``adjustment``, which the gate quarantines by name.
- Lines with no customer keep a null ``customer_id`` on their order, so the gate quarantines them.
- Non-product stock codes (postage, manual, bank charges, fees...) get category ``Non-product``.
- Country names become ISO 3166 alpha-2 codes; "Unspecified" becomes the user-assigned ``ZZ``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from salespulse.config import REPO_ROOT
from salespulse.generator import conform
from salespulse.model import ENTITY_BY_NAME

# The data set sits beside the repository, in ../shared/data/online_retail/ (not committed here).
DEFAULT_PATH = REPO_ROOT.parent / "shared" / "data" / "online_retail" / "online_retail_2010_2011.parquet"

COUNTRY_CODES = {
    "United Kingdom": "GB",
    "Germany": "DE",
    "France": "FR",
    "EIRE": "IE",
    "Spain": "ES",
    "Netherlands": "NL",
    "Belgium": "BE",
    "Switzerland": "CH",
    "Portugal": "PT",
    "Australia": "AU",
    "Norway": "NO",
    "Italy": "IT",
    "Channel Islands": "JE",
    "Finland": "FI",
    "Cyprus": "CY",
    "Sweden": "SE",
    "Unspecified": "ZZ",
    "Austria": "AT",
    "Denmark": "DK",
    "Japan": "JP",
    "Poland": "PL",
    "Israel": "IL",
    "USA": "US",
    "Hong Kong": "HK",
    "Singapore": "SG",
    "Iceland": "IS",
    "Canada": "CA",
    "Greece": "GR",
    "Malta": "MT",
    "United Arab Emirates": "AE",
    "European Community": "EU",
    "RSA": "ZA",
    "Lebanon": "LB",
    "Lithuania": "LT",
    "Brazil": "BR",
    "Czech Republic": "CZ",
    "Bahrain": "BH",
    "Saudi Arabia": "SA",
}
REGION_BY_CODE = {
    "GB": "United Kingdom",
    "JE": "United Kingdom",
    "IE": "Europe",
    "DE": "Europe",
    "FR": "Europe",
    "ES": "Europe",
    "NL": "Europe",
    "BE": "Europe",
    "CH": "Europe",
    "PT": "Europe",
    "NO": "Europe",
    "IT": "Europe",
    "FI": "Europe",
    "CY": "Europe",
    "SE": "Europe",
    "AT": "Europe",
    "DK": "Europe",
    "PL": "Europe",
    "IS": "Europe",
    "GR": "Europe",
    "MT": "Europe",
    "EU": "Europe",
    "LT": "Europe",
    "CZ": "Europe",
    "AU": "Asia Pacific",
    "JP": "Asia Pacific",
    "HK": "Asia Pacific",
    "SG": "Asia Pacific",
    "IL": "Middle East & Africa",
    "AE": "Middle East & Africa",
    "ZA": "Middle East & Africa",
    "LB": "Middle East & Africa",
    "BH": "Middle East & Africa",
    "SA": "Middle East & Africa",
    "US": "Americas",
    "CA": "Americas",
    "BR": "Americas",
    "ZZ": "Unknown",
}
NON_PRODUCT_CODES = {
    "POST",
    "DOT",
    "M",
    "C2",
    "D",
    "S",
    "BANK CHARGES",
    "AMAZONFEE",
    "CRUK",
    "PADS",
    "B",
    "m",
}


def _category(stock_code: pd.Series) -> pd.Series:
    category = pd.Series("Merchandise", index=stock_code.index, dtype=object)
    category[stock_code.str.startswith("gift_")] = "Gift vouchers"
    category[stock_code.str.startswith("DCGS")] = "Merchandise"
    category[stock_code.isin(NON_PRODUCT_CODES)] = "Non-product"
    return category


def load_online_retail(path: Path = DEFAULT_PATH) -> dict[str, pd.DataFrame]:
    """Read the parquet file and return customers, products, orders and order lines in the model's shape."""
    lines = pd.read_parquet(path)
    lines["customer_id"] = np.where(
        lines["CustomerID"].notna(), "C" + lines["CustomerID"].fillna(0).astype("int64").astype(str), None
    )
    lines["country_code"] = lines["Country"].map(COUNTRY_CODES)

    known = lines[lines["customer_id"].notna()]
    first_seen = known.groupby("customer_id")["InvoiceDate"].min()
    country = known.sort_values("InvoiceDate").groupby("customer_id")["country_code"].first()
    customers = pd.DataFrame(
        {"customer_id": first_seen.index, "signup_date": first_seen.dt.normalize().to_numpy()}
    )
    customers["customer_name"] = "Online Retail customer " + customers["customer_id"].str[1:]
    customers["country_code"] = country.reindex(customers["customer_id"]).to_numpy()
    customers["region"] = customers["country_code"].map(REGION_BY_CODE)
    customers["channel"] = "online"
    customers["updated_at"] = first_seen.to_numpy()

    names = lines.groupby(["StockCode", "Description"]).size().rename("n").reset_index()
    names = names.sort_values(["StockCode", "n"], ascending=[True, False]).drop_duplicates("StockCode")
    positive = lines[lines["UnitPrice"] > 0]
    products = pd.DataFrame(
        {"product_id": names["StockCode"].to_numpy(), "product_name": names["Description"].to_numpy()}
    )
    products["category"] = _category(products["product_id"])
    products["list_price"] = products["product_id"].map(positive.groupby("StockCode")["UnitPrice"].median())
    products["updated_at"] = (
        lines.groupby("StockCode")["InvoiceDate"].min().reindex(products["product_id"]).to_numpy()
    )

    invoices = lines.groupby("InvoiceNo", sort=True).agg(
        customer_id=("customer_id", "first"),
        order_date=("InvoiceDate", "min"),
        updated_at=("InvoiceDate", "max"),
    )
    orders = invoices.reset_index().rename(columns={"InvoiceNo": "order_id"})
    first_char = orders["order_id"].str[0]
    orders["status"] = np.select(
        [first_char == "C", first_char == "A"], ["returned", "adjustment"], "completed"
    )
    orders["order_date"] = orders["order_date"].dt.normalize()
    orders["channel"] = "online"
    orders["currency"] = "GBP"

    credit = lines["InvoiceNo"].str.startswith("C")
    order_lines = pd.DataFrame(
        {
            "order_id": lines["InvoiceNo"],
            "line_number": lines.groupby("InvoiceNo").cumcount() + 1,
            "product_id": lines["StockCode"],
            "quantity": np.where(credit, lines["Quantity"].abs(), lines["Quantity"]),
            "unit_price": lines["UnitPrice"],
            "discount_pct": 0.0,
            "updated_at": lines["InvoiceDate"],
        }
    )
    frames = {"customers": customers, "products": products, "orders": orders, "order_lines": order_lines}
    return {name: conform(frame, ENTITY_BY_NAME[name]) for name, frame in frames.items()}
