from tests.helpers import form_action, links, path_of, signup


def test_signup_confirm_unsubscribe(client, smtp, drain):
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
    unsub = welcome["List-Unsubscribe"].strip("<>")
    r = client.post(path_of(unsub), data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
