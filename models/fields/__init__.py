"""Documents to data: the fields of a template (config.yaml ``templates:``), read from a
document's pages and checked.

- ``template``: what a template is, and the JSON Schema and instruction a VLM is given;
- ``answer``: a VLM's JSON answer for one page → the values it found there;
- ``rules``: the values Tesseract's text holds, found by label phrases and identifier shapes;
- ``checks``: each value parsed by its type and checked (INN, OGRN, KPP, BIK, accounts, …);
- ``collect``: the pages' values → one checked value per field, with conflicts shown;
- ``result``: the types a run's fields are kept in (the result contract's ``fields``).
- ``sheet``: many documents' fields as one sheet (xlsx, csv, json), a row per document;
- ``score``: a run's fields against a document's true fields (precision, recall, exact match).
"""
