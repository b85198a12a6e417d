"""A throw-away nginx site on the input host, to prove the validate-then-reload mechanism.

KUBI_TEST_SITE=good|broken|absent chooses what to write.
"""

import os

from kubi import nginx
from kubi.deploy import me

SITES = {
    "good": "server {\n    listen 127.0.0.1:8081;\n    location / { return 200 'kubi-ok'; }\n}\n",
    # A typo nginx -t refuses: the running nginx must keep serving the good version.
    "broken": "server {\n    listen 127.0.0.1:8081;\n    location / { retrun 200 'x'; }\n}\n",
    "absent": None,
}

if "input" in me().roles:
    nginx.site("kubi-test", SITES[os.environ["KUBI_TEST_SITE"]])
