"""A Label Studio ML backend, served by ``ihp-rt serve`` under ``/label-studio``.

In Label Studio: Settings -> Model -> Connect model, URL ``http://HOST:PORT/label-studio``,
with "interactive preannotations" on. The labelling config pairs smart keypoints (one click
per part, its label the part's name) with brush labels of the same names::

    <View>
      <Image name="image" value="$image"/>
      <KeyPointLabels name="click" toName="image" smart="true">
        <Label value="hair"/><Label value="upper-clothes"/>...
      </KeyPointLabels>
      <BrushLabels name="parts" toName="image">
        <Label value="hair"/><Label value="upper-clothes"/>...
      </BrushLabels>
    </View>

Each smart keypoint becomes a labelled click, kept per task and grouped by label
(:mod:`.keypoints`: the front end sends one label's keypoints at a time). When the last
keypoint of a label is deleted the front end sends an empty list, which cannot say which label
went: that clears *all* the task's keypoints, and the reply is empty. Keeping them instead
would leave a click the annotator can neither see nor remove steering every later mask (after
"delete all regions", every label's); clearing loses only clicks still on screen, and moving
or adding one keypoint of a label brings that label's group back.

The reply is one BrushLabels region per part present in the mask, as brush RLE. Each task's
image is fetched (:mod:`.fetch`, only from URLs :mod:`.urls` allows, with the token of
:mod:`.tokens`), decoded and pre-processed once and kept, with its keypoints, for the
``max_sessions`` most recently clicked tasks (:mod:`.tasks`); :mod:`.upstream` says what a
failed fetch or token exchange is. :mod:`.label_config` reads the labelling config,
:mod:`.basic_auth` checks Label Studio's own credentials, :mod:`.host` says which Label Studio
is served, and :mod:`.routes` puts it together.
"""

from ihp_rt.serving.label_studio.host import LabelStudioHost
from ihp_rt.serving.label_studio.routes import router

__all__ = ["LabelStudioHost", "router"]
