"""The console's forms (Flask-WTF: each carries its CSRF token); their labels are translated."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (BooleanField, IntegerField, PasswordField, SelectField, SelectMultipleField, StringField,
                     SubmitField, TextAreaField)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, NumberRange, ValidationError

from ..seat_settings import MAX_BYTES as SEAT_SETTINGS_BYTES
from .accounts import ADMIN, MAX_PASSWORD, MIN_PASSWORD, TEACHER

MAX_EXTENSION_MIN = 24 * 60  # one extension; a longer one is an edit of the end time


class SignIn(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired(_l("Enter your username.")), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(_l("Enter your password.")),
                                                         Length(max=MAX_PASSWORD)])


class ExamForm(FlaskForm):
    """An exam's title and times: editing an exam, or copying one."""
    title = StringField(_l("Title"), validators=[DataRequired(_l("Give the exam a title.")), Length(max=200)])
    # The browser's date-and-time picker; a time without an offset is the exam office's time.
    starts_at = StringField(_l("Starts at"), validators=[DataRequired(_l("Give the start time."))],
                            render_kw={"type": "datetime-local"})
    ends_at = StringField(_l("Ends at"), validators=[DataRequired(_l("Give the end time."))],
                          render_kw={"type": "datetime-local"})


class NewExam(ExamForm):
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


class IssueInvitations(FlaskForm):
    """Invitation codes for every roster student without one, or for the ticked students (again:
    their earlier codes stop working). The ids are checked as the token API checks them."""
    students = SelectMultipleField(validate_choice=False)  # the roster may change while the page is open
    missing = SubmitField(_l("Invite every student without an invitation"))
    ticked = SubmitField(_l("Issue new codes for the ticked students"))


def _new_password_field(label):
    return PasswordField(label, validators=[
        DataRequired(_l("Enter a password.")),
        Length(min=MIN_PASSWORD, max=MAX_PASSWORD, message=_l("A password has %(min)d to %(max)d characters.")),
    ])


class NewAccount(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired(_l("Enter a username.")), Length(max=64)])
    role = SelectField(_l("Role"), choices=[SelectChoice(TEACHER, _l("Teacher")),
                                            SelectChoice(ADMIN, _l("Administrator"))], default=TEACHER)
    password = _new_password_field(_l("Password"))


class ResetPassword(FlaskForm):
    password = _new_password_field(_l("New password"))


class OwnPassword(FlaskForm):
    current = PasswordField(_l("Current password"), validators=[DataRequired(_l("Enter your current password.")),
                                                                Length(max=MAX_PASSWORD)])
    password = _new_password_field(_l("New password"))
    repeat = PasswordField(_l("The new password again"),
                           validators=[EqualTo("password", _l("The two new passwords differ."))])


class SeatSettings(FlaskForm):
    # JSON as GET /api/admin/seat-config shows it; no larger than the API's PUT takes.
    config = TextAreaField(_l("Settings"), validators=[
        Length(max=SEAT_SETTINGS_BYTES, message=_l("At most %(max)d characters."))],
        render_kw={"rows": 24, "spellcheck": "false", "translate": "no"})


def _ascii_digits(_form, field) -> None:
    # int() reads "٣" as 3: a number is typed with the digits 0-9.
    if not (field.raw_data and field.raw_data[0].strip().isascii()):
        raise ValidationError(_l("Give a number of minutes."))


class ExtendExam(FlaskForm):
    minutes = IntegerField(_l("Minutes"), validators=[
        InputRequired(_l("Give a number of minutes.")), _ascii_digits,
        NumberRange(min=1, max=MAX_EXTENSION_MIN, message=_l("Extend by %(min)d to %(max)d minutes.")),
    ])


class EndExam(FlaskForm):
    confirm = BooleanField(_l("Yes, end the exam now"), validators=[DataRequired(_l("Tick the box to confirm."))])


class DeleteExam(FlaskForm):
    confirm = BooleanField(_l("Yes, delete the exam and its sessions"),
                           validators=[DataRequired(_l("Tick the box to confirm."))])
    # The guard of the token API's delete: files still on disk refuse it unless this is ticked.
    with_files = BooleanField(_l("Also delete its recordings, segments and screenshots"))


class StudentsImport(FlaskForm):
    """Students pasted or as a file (CSV, .xlsx or a text roster), for a roster or the registry.
    Its size is bounded where the body is read (console.py: PROCTOR_MAX_IMPORT_BYTES)."""
    text = TextAreaField(_l("Paste students"), render_kw={"rows": 8, "spellcheck": "false"})
    file = FileField(_l("Or upload a file"), render_kw={"accept": ".csv,.xlsx,.txt,text/csv,text/plain"})

    def validate(self, extra_validators=None) -> bool:
        if not super().validate(extra_validators):
            return False
        pasted, chosen = bool((self.text.data or "").strip()), bool(self.file.data)
        if pasted == chosen:
            self.text.errors.append(_l("Paste students or choose a file (one of the two)."))
            return False
        return True
