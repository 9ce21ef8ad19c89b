"""The whole way once: sign up, confirm through the mailed link, unsubscribe with one click
from the welcome mail, and no digest reaches the reader after it."""

from tests.helpers import find_subscriber, form_action, links, path_of, signup, one_click_url
from tests.helpers import add_listing, add_reader, send_now


def test_signup_confirm_unsubscribe(client, smtp, drain, database, settings):
    r = signup(client, "anna@example.org", keywords="Python", location="Berlin")
    assert r.status_code == 200
    drain()
    [mail] = smtp.wait_for(1)
    text = mail.part("plain")
    [confirm] = links(text, "/confirm/")
    page = client.get(path_of(confirm))
    assert page.status_code == 200
    done = client.post(form_action(page.get_data(as_text=True)))
    assert done.status_code == 200
    drain()
    mails = smtp.wait_for(2)
    welcome = mails[1].message
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsub = one_click_url(welcome)
    r = client.post(path_of(unsub), data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert find_subscriber(database, "anna@example.org").status == "unsubscribed"

    # The next edition goes out, to everyone but her.
    with database.session_scope() as session:
        add_listing(session, 1, "Python-Entwickler (m/w/d)", location="Berlin")
        add_reader(session, "other@example.org")
    send_now(database, settings, drain)
    assert len(smtp.to("other@example.org")) == 1
    assert len(smtp.to("anna@example.org")) == 2  # the confirmation and the welcome mail
