"""Files users hand us (opened safely, within a budget) and files we write for them (checked
against what they would replace)."""
from adaptformer.files.opener import BUDGETS, check_regular, decode_utf8, open_regular, read_bytes, read_json, read_text  # noqa: F401
from adaptformer.files.outputs import check_outputs  # noqa: F401,E402
