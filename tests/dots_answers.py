"""Realistic dots.ocr answers, written by hand after the published output schema
(prompt_layout_all_en): a JSON list of {bbox, category, text} in the pixels of the image
the model saw. Used by the parser tests and the replaying test server."""

import json

# A tender page as dots.ocr sees it: smart resize turns a 1653×2339 page into 1652×2352.
SEEN = (1652, 2352)
PAGE = (1653, 2339)

CELLS = [
    {"bbox": [140, 96, 1512, 150], "category": "Page-header", "text": "ООО «Поставка» — Техническое задание"},
    {"bbox": [140, 210, 1512, 290], "category": "Title", "text": "# Техническое задание на поставку оборудования"},
    {"bbox": [140, 330, 1512, 380], "category": "Section-header", "text": "## 1. Scope of supply"},
    {"bbox": [140, 400, 1512, 560], "category": "Text",
     "text": "The supplier delivers **12 office chairs** and 4 desks within 30 days of signing."},
    {"bbox": [140, 600, 1512, 900], "category": "Table",
     "text": "<table><thead><tr><th>Item</th><th>Qty</th></tr></thead><tbody><tr><td>Chair</td><td>12</td></tr>"
             "<tr><td>Desk</td><td>4</td></tr></tbody></table>"},
    {"bbox": [600, 940, 1050, 1010], "category": "Formula", "text": "$$S = \\sum_{i=1}^{n} p_i q_i$$"},
    {"bbox": [400, 1050, 1250, 1600], "category": "Picture"},
    {"bbox": [400, 1610, 1250, 1660], "category": "Caption", "text": "Рис. 1. Схема размещения"},
    {"bbox": [140, 1700, 1512, 1760], "category": "List-item", "text": "- Срок поставки: 30 дней"},
    {"bbox": [140, 2200, 1512, 2250], "category": "Footnote", "text": "¹ Prices include VAT."},
    {"bbox": [700, 2296, 952, 2352], "category": "Page-footer", "text": "1"},  # touches the bottom edge
]

COMPLETE = json.dumps(CELLS, ensure_ascii=False)
# Cut by max_tokens in the middle of the table cell's text.
TRUNCATED = COMPLETE[: COMPLETE.index("<tr><td>Desk")]
# A looping answer: the list item repeated until max_tokens, then cut.
_loop = json.dumps(CELLS[:9], ensure_ascii=False)[:-1]
LOOPING = _loop + (", " + json.dumps(CELLS[8], ensure_ascii=False)) * 40 + ', {"bbox": [140, 17'
FENCED = "```json\n" + COMPLETE + "\n```"
