<?xml version="1.0" encoding="UTF-8"?>
<!-- regenheart's Define-XML 2.1 stylesheet (written for regenheart, MIT licence like the rest of the project).
     Renders define.xml as one HTML page for a reviewer: standards, datasets, variables per dataset with
     value-level metadata, codelists, methods and comments. XSLT 1.0, so a browser can apply it too. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:odm="http://www.cdisc.org/ns/odm/v1.3" xmlns:def="http://www.cdisc.org/ns/def/v2.1"
                xmlns:xlink="http://www.w3.org/1999/xlink" exclude-result-prefixes="odm def xlink">
  <xsl:output method="html" encoding="UTF-8" indent="yes" doctype-system="about:legacy-compat"/>

  <xsl:key name="item" match="odm:ItemDef" use="@OID"/>
  <xsl:key name="codelist" match="odm:CodeList" use="@OID"/>
  <xsl:key name="method" match="odm:MethodDef" use="@OID"/>
  <xsl:key name="comment" match="def:CommentDef" use="@OID"/>
  <xsl:key name="valuelist" match="def:ValueListDef" use="@OID"/>
  <xsl:key name="where" match="def:WhereClauseDef" use="@OID"/>
  <xsl:key name="leaf" match="def:leaf" use="@ID"/>

  <xsl:variable name="mdv" select="/odm:ODM/odm:Study/odm:MetaDataVersion"/>

  <xsl:template match="/">
    <html lang="en">
      <head>
        <meta charset="utf-8"/>
        <title>Define-XML: <xsl:value-of select="/odm:ODM/odm:Study/odm:GlobalVariables/odm:StudyName"/></title>
        <style>
          body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1b1f23; }
          nav { position: fixed; top: 0; bottom: 0; left: 0; width: 15rem; overflow-y: auto; background: #f3f5f7;
                padding: 1rem; box-sizing: border-box; font-size: .9rem; border-right: 1px solid #d0d7de; }
          nav a { display: block; padding: .15rem 0; color: #0b4f8a; text-decoration: none; }
          main { margin-left: 15rem; padding: 1rem 2rem 4rem; }
          h1 { font-size: 1.5rem; } h2 { margin-top: 2.5rem; border-bottom: 2px solid #0b4f8a; }
          table { border-collapse: collapse; width: 100%; margin: .5rem 0 1.5rem; font-size: .88rem; }
          th, td { border: 1px solid #d0d7de; padding: .3rem .45rem; text-align: left; vertical-align: top; }
          th { background: #e8eef4; } tr:nth-child(even) td { background: #fafbfc; }
          .note { background: #fff4ce; border: 1px solid #e0c55a; padding: .5rem .8rem; }
          .vlm td { background: #f6fbff !important; font-size: .84rem; }
          .ext { color: #9a3412; font-weight: 600; } code { font-size: .85rem; }
          @media print { nav { display: none; } main { margin: 0; } }
        </style>
      </head>
      <body>
        <nav>
          <strong>Contents</strong>
          <a href="#standards">Standards</a>
          <a href="#datasets">Datasets</a>
          <xsl:for-each select="$mdv/odm:ItemGroupDef">
            <a href="#IG.{@Name}">&#160;&#160;<xsl:value-of select="@Name"/></a>
          </xsl:for-each>
          <a href="#codelists">Codelists</a>
          <a href="#methods">Methods</a>
          <a href="#comments">Comments</a>
        </nav>
        <main>
          <h1><xsl:value-of select="/odm:ODM/odm:Study/odm:GlobalVariables/odm:StudyName"/>:
            <xsl:value-of select="$mdv/@Name"/></h1>
          <p><xsl:value-of select="/odm:ODM/odm:Study/odm:GlobalVariables/odm:StudyDescription"/></p>
          <p>Define-XML <xsl:value-of select="$mdv/@def:DefineVersion"/>, created
            <xsl:value-of select="/odm:ODM/@CreationDateTime"/> by <xsl:value-of select="/odm:ODM/@SourceSystem"/>
            <xsl:text> </xsl:text><xsl:value-of select="/odm:ODM/@SourceSystemVersion"/>.</p>
          <xsl:if test="$mdv/@def:CommentOID">
            <p class="note"><xsl:value-of select="key('comment', $mdv/@def:CommentOID)/odm:Description/odm:TranslatedText"/></p>
          </xsl:if>
          <xsl:if test="$mdv/def:SupplementalDoc">
            <p>Supplemental documents:
              <xsl:for-each select="$mdv/def:SupplementalDoc/def:DocumentRef">
                <a href="{key('leaf', @leafID)/@xlink:href}"><xsl:value-of select="key('leaf', @leafID)/def:title"/></a>
                <xsl:if test="position() != last()">, </xsl:if>
              </xsl:for-each></p>
          </xsl:if>

          <h2 id="standards">Standards</h2>
          <table>
            <tr><th>Name</th><th>Type</th><th>Publishing set</th><th>Version</th><th>Status</th></tr>
            <xsl:for-each select="$mdv/def:Standards/def:Standard">
              <tr><td><xsl:value-of select="@Name"/></td><td><xsl:value-of select="@Type"/></td>
                <td><xsl:value-of select="@PublishingSet"/></td><td><xsl:value-of select="@Version"/></td>
                <td><xsl:value-of select="@Status"/></td></tr>
            </xsl:for-each>
          </table>

          <h2 id="datasets">Datasets</h2>
          <table>
            <tr><th>Dataset</th><th>Description</th><th>Class</th><th>Structure</th><th>Purpose</th><th>Keys</th>
              <th>Location</th></tr>
            <xsl:for-each select="$mdv/odm:ItemGroupDef">
              <tr>
                <td><a href="#IG.{@Name}"><xsl:value-of select="@Name"/></a></td>
                <td><xsl:value-of select="odm:Description/odm:TranslatedText"/>
                  <xsl:if test="@def:CommentOID"><br/><em><xsl:value-of
                    select="key('comment', @def:CommentOID)/odm:Description/odm:TranslatedText"/></em></xsl:if></td>
                <td><xsl:value-of select="def:Class/@Name"/></td>
                <td><xsl:value-of select="@def:Structure"/></td>
                <td><xsl:value-of select="@Purpose"/></td>
                <td><xsl:for-each select="odm:ItemRef[@KeySequence]">
                    <xsl:sort select="@KeySequence" data-type="number"/>
                    <xsl:value-of select="key('item', @ItemOID)/@Name"/>
                    <xsl:if test="position() != last()">, </xsl:if>
                  </xsl:for-each></td>
                <td><a href="{def:leaf/@xlink:href}"><xsl:value-of select="def:leaf/def:title"/></a></td>
              </tr>
            </xsl:for-each>
          </table>

          <xsl:for-each select="$mdv/odm:ItemGroupDef">
            <h2 id="IG.{@Name}"><xsl:value-of select="@Name"/>: <xsl:value-of select="odm:Description/odm:TranslatedText"/></h2>
            <p><xsl:value-of select="def:Class/@Name"/>; <xsl:value-of select="@def:Structure"/>;
              file <a href="{def:leaf/@xlink:href}"><xsl:value-of select="def:leaf/def:title"/></a></p>
            <table>
              <tr><th>Variable</th><th>Label</th><th>Key</th><th>Type</th><th>Length</th><th>Format / digits</th>
                <th>Mandatory</th><th>Role</th><th>Controlled terms</th><th>Origin / source / method</th></tr>
              <xsl:for-each select="odm:ItemRef">
                <xsl:variable name="it" select="key('item', @ItemOID)"/>
                <tr id="{@ItemOID}">
                  <td><strong><xsl:value-of select="$it/@Name"/></strong>
                    <xsl:if test="@def:HasNoData = 'Yes'"><br/><em>no data</em></xsl:if></td>
                  <td><xsl:value-of select="$it/odm:Description/odm:TranslatedText"/></td>
                  <td><xsl:value-of select="@KeySequence"/></td>
                  <td><xsl:value-of select="$it/@DataType"/></td>
                  <td><xsl:value-of select="$it/@Length"/></td>
                  <td><xsl:value-of select="$it/@def:DisplayFormat"/><xsl:value-of select="$it/@SignificantDigits"/></td>
                  <td><xsl:value-of select="@Mandatory"/></td>
                  <td><xsl:value-of select="@Role"/></td>
                  <td><xsl:call-template name="codelist-link"><xsl:with-param name="it" select="$it"/></xsl:call-template></td>
                  <td><xsl:call-template name="origin"><xsl:with-param name="it" select="$it"/>
                      <xsl:with-param name="method" select="@MethodOID"/></xsl:call-template></td>
                </tr>
                <xsl:if test="$it/def:ValueListRef">
                  <xsl:for-each select="key('valuelist', $it/def:ValueListRef/@ValueListOID)/odm:ItemRef">
                    <xsl:variable name="vit" select="key('item', @ItemOID)"/>
                    <xsl:variable name="wc" select="key('where', def:WhereClauseRef/@WhereClauseOID)"/>
                    <tr class="vlm">
                      <td>&#8627; where <xsl:value-of select="key('item', $wc/odm:RangeCheck/@def:ItemOID)/@Name"/>
                        <xsl:text> </xsl:text><xsl:value-of select="$wc/odm:RangeCheck/@Comparator"/>
                        <xsl:text> </xsl:text><code><xsl:value-of select="$wc/odm:RangeCheck/odm:CheckValue"/></code></td>
                      <td><xsl:value-of select="$vit/odm:Description/odm:TranslatedText"/></td>
                      <td/>
                      <td><xsl:value-of select="$vit/@DataType"/></td>
                      <td><xsl:value-of select="$vit/@Length"/></td>
                      <td><xsl:value-of select="$vit/@SignificantDigits"/></td>
                      <td><xsl:value-of select="@Mandatory"/></td>
                      <td/>
                      <td><xsl:call-template name="codelist-link"><xsl:with-param name="it" select="$vit"/></xsl:call-template></td>
                      <td><xsl:call-template name="origin"><xsl:with-param name="it" select="$vit"/>
                          <xsl:with-param name="method" select="@MethodOID"/></xsl:call-template></td>
                    </tr>
                  </xsl:for-each>
                </xsl:if>
              </xsl:for-each>
            </table>
          </xsl:for-each>

          <h2 id="codelists">Codelists</h2>
          <xsl:for-each select="$mdv/odm:CodeList">
            <h3 id="{@OID}"><xsl:value-of select="@Name"/>
              <xsl:if test="odm:Alias[@Context='nci:ExtCodeID']"> (<xsl:value-of select="odm:Alias[@Context='nci:ExtCodeID']/@Name"/>)</xsl:if>
              <xsl:if test="@def:IsNonStandard = 'Yes'"> (sponsor-defined)</xsl:if></h3>
            <table>
              <tr><th>Value</th><th>Decode</th><th>NCI code</th></tr>
              <xsl:for-each select="odm:CodeListItem | odm:EnumeratedItem">
                <tr><td><code><xsl:value-of select="@CodedValue"/></code>
                    <xsl:if test="@def:ExtendedValue = 'Yes'"> <span class="ext">[extended value]</span></xsl:if></td>
                  <td><xsl:value-of select="odm:Decode/odm:TranslatedText"/></td>
                  <td><xsl:value-of select="odm:Alias[@Context='nci:ExtCodeID']/@Name"/></td></tr>
              </xsl:for-each>
            </table>
          </xsl:for-each>

          <h2 id="methods">Methods</h2>
          <table>
            <tr><th>Method</th><th>Name</th><th>Type</th><th>Description</th></tr>
            <xsl:for-each select="$mdv/odm:MethodDef">
              <tr id="{@OID}"><td><xsl:value-of select="@OID"/></td><td><xsl:value-of select="@Name"/></td>
                <td><xsl:value-of select="@Type"/></td><td><xsl:value-of select="odm:Description/odm:TranslatedText"/></td></tr>
            </xsl:for-each>
          </table>

          <h2 id="comments">Comments</h2>
          <table>
            <tr><th>Comment</th><th>Text</th></tr>
            <xsl:for-each select="$mdv/def:CommentDef">
              <tr id="{@OID}"><td><xsl:value-of select="@OID"/></td>
                <td><xsl:value-of select="odm:Description/odm:TranslatedText"/></td></tr>
            </xsl:for-each>
          </table>
        </main>
      </body>
    </html>
  </xsl:template>

  <xsl:template name="codelist-link">
    <xsl:param name="it"/>
    <xsl:if test="$it/odm:CodeListRef">
      <xsl:variable name="cl" select="key('codelist', $it/odm:CodeListRef/@CodeListOID)"/>
      <a href="#{$cl/@OID}"><xsl:value-of select="$cl/@Name"/></a>
      <xsl:if test="count($cl/odm:CodeListItem | $cl/odm:EnumeratedItem) &lt;= 5">
        <br/><xsl:for-each select="$cl/odm:CodeListItem | $cl/odm:EnumeratedItem">
          <code><xsl:value-of select="@CodedValue"/></code><xsl:if test="position() != last()">, </xsl:if>
        </xsl:for-each>
      </xsl:if>
    </xsl:if>
  </xsl:template>

  <xsl:template name="origin">
    <xsl:param name="it"/>
    <xsl:param name="method"/>
    <xsl:for-each select="$it/def:Origin">
      <xsl:value-of select="@Type"/>
      <xsl:if test="@Source"> (<xsl:value-of select="@Source"/>)</xsl:if>
      <xsl:if test="odm:Description">: <xsl:value-of select="odm:Description/odm:TranslatedText"/></xsl:if>
    </xsl:for-each>
    <xsl:if test="$method">
      <br/><a href="#{$method}"><xsl:value-of select="$method"/></a>:
      <xsl:value-of select="key('method', $method)/odm:Description/odm:TranslatedText"/>
    </xsl:if>
    <xsl:if test="$it/@def:CommentOID">
      <br/><em><xsl:value-of select="key('comment', $it/@def:CommentOID)/odm:Description/odm:TranslatedText"/></em>
    </xsl:if>
  </xsl:template>
</xsl:stylesheet>
