"""The console's forms (Flask-WTF: each carries its CSRF token); their labels are translated."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from .accounts import MAX_PASSWORD, MIN_PASSWORD


class SignIn(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired(_l("Enter your username.")), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(_l("Enter your password.")),
                                                         Length(max=MAX_PASSWORD)])


class NewExam(FlaskForm):
    title = StringField(_l("Title"), validators=[DataRequired(_l("Give the exam a title.")), Length(max=200)])
    # The browser's date-and-time picker; a time without an offset is the exam office's time.
    starts_at = StringField(_l("Starts at"), validators=[DataRequired(_l("Give the start time."))],
                            render_kw={"type": "datetime-local"})
    ends_at = StringField(_l("Ends at"), validators=[DataRequired(_l("Give the end time."))],
                          render_kw={"type": "datetime-local"})
    # Its size is bounded where the body is read (console.py: PROCTOR_MAX_IMPORT_BYTES).
    roster = TextAreaField(_l("Roster"), render_kw={"rows": 12, "spellcheck": "false"})


class InvigilatorSignIn(FlaskForm):
    password = PasswordField(_l("Invigilator password"),
                             validators=[DataRequired(_l("Enter the exam's invigilator password.")),
                                         Length(max=MAX_PASSWORD)])


class InvigilatorPassword(FlaskForm):
    password = PasswordField(_l("New invigilator password"), validators=[
        DataRequired(_l("Enter a password.")),
        # WTForms puts in the bounds.
        Length(min=MIN_PASSWORD, max=MAX_PASSWORD, message=_l("A password has %(min)d to %(max)d characters.")),
    ])


class LetIn(FlaskForm):
    student_id = StringField(_l("Student id"), validators=[DataRequired(_l("Enter the student id.")), Length(max=64)])
