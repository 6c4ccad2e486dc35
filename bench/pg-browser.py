#!/usr/bin/env python3
"""Sign in through jitproxy's login page like a browser, for bench/pg.sh.

usage: pg-browser.py URL USERNAME PASSWORD

GETs the URL that `jitproxy login --no-browser` printed (it redirects to the
dev identity provider's login form), submits the form (its hidden fields,
username, password and action=signin) and follows the redirects back to the
CLI's loopback listener. Exits non-zero unless the last page says the login
was received.
"""
import html
import http.cookiejar
import re
import sys
import urllib.parse
import urllib.request


def main():
    url, user, password = sys.argv[1:4]
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    r = opener.open(url, timeout=30)
    page = r.read().decode("utf-8", "replace")
    form = re.search(r'<form[^>]*action="([^"]*)"', page)
    if not form:
        sys.exit("pg-browser.py: no login form at %s:\n%s" % (r.geturl(), page[:500]))
    action = urllib.parse.urljoin(r.geturl(), html.unescape(form.group(1)))
    fields = {}
    for tag in re.findall(r"<input[^>]*>", page):
        name = re.search(r'\bname="([^"]+)"', tag)
        value = re.search(r'\bvalue="([^"]*)"', tag)
        if name and value:
            fields[name.group(1)] = html.unescape(value.group(1))
    fields.update(username=user, password=password, action="signin")
    r = opener.open(action, urllib.parse.urlencode(fields).encode(), timeout=30)
    page = r.read().decode("utf-8", "replace")
    if "login received" not in page.lower() and "close this" not in page.lower():
        sys.exit("pg-browser.py: after signing in the page says:\n%s" % page[:500])


if __name__ == "__main__":
    main()
