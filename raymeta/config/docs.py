"""The docstring under each field of a config dataclass, read from its source: the one text that the YAML
reference, the command-line flags' ``--help`` and the error messages share."""

import ast
import inspect
import textwrap


def field_docs(cls) -> dict[str, str]:
    """The docstring under each field of a config dataclass (whitespace collapsed): the one text that the YAML
    reference, the command-line flags' ``--help`` and the error messages share."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:] + [None], strict=True):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs
