"""The problem `advisor.text.text_problem` names for text PostgreSQL cannot store.

The API's errors and the dashboard's 400 page show the same wording; tests of both expect it
from here.
"""

NUL = "contains a NUL character (U+0000) at position {}, which cannot be stored"
